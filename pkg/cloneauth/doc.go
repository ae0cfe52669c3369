// Package cloneauth decides whether a user or a service account may clone a
// PersistentVolumeClaim from another namespace, and signs the grants that let
// the controller move data for an allowed clone.
//
// # Authorization
//
// A same-namespace clone needs nothing beyond "create datavolumes", which
// delegated authorization has already checked. A cross-namespace clone needs,
// in the source namespace, "create" on the cdi.kubevirt.io datavolumes/source
// subresource named after the source PersistentVolumeClaim, or else "create
// pods" (whoever may run pods there can read the claim anyway). Both are
// asked by SubjectAccessReview for the requesting user. The check fails
// closed: an error or a timeout denies.
//
// # Grants
//
// A grant names one allowed clone: source namespace/name, target
// namespace/name and target UID, issuer, issue and expiry time. Its token is
//
//	v1.<key id>.<base64url(JSON payload)>.<base64url(HMAC-SHA256)>
//
// base64url without padding, the MAC taken with the named key over
// "v1.<key id>.<base64url(JSON payload)>". The payload is
//
//	{"sourceNamespace":"src","sourceName":"disk","targetNamespace":"dst",
//	 "targetName":"dv","targetUID":"…","issuer":"…","iat":1700000000,"exp":1700000600}
//
// with times in Unix seconds.
//
// # Keys
//
// LoadKeySet reads either a directory or a single file.
//
// A directory is laid out like a mounted Secret: every regular file (or
// symlink to one) is a key, its name the key id and its bytes, taken as they
// are, the HMAC key; a key must be at least 32 bytes and its id may hold only
// letters, digits, '-' and '_'. A file named "active" holds the id of the
// signing key (surrounding whitespace ignored); without it the lexically last id signs. Every other key still
// verifies, so a key is rotated by adding a new one, making it active, and
// removing the old one once its grants have expired. Names starting with "."
// (a Secret volume's "..data" links) are skipped.
//
// A single file is one key, active, its id the file's name.
//
// GenerateKey writes a new random key file into such a directory.
package cloneauth
