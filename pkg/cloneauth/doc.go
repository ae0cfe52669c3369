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
// The admission checks (datavolume-apiserver's and the webhook's) bound the
// checks in flight per requester (WithMaxInFlightPerRequester): one user's
// flood of clones waits for its own slots and, past a short wait, is refused
// with 429 and Retry-After (ErrTooManyChecks, TooManyChecks), instead of
// queuing everyone else's checks behind it in kube-apiserver, which serves
// all of one server's reviews as a single flow.
//
// # Grants
//
// A grant names one allowed clone: source namespace/name (and the source
// claim's UID when it existed at create), target namespace/name and target
// UID, the requester as authenticated at create (user, UID, groups, extra),
// issuer, issue and expiry time. Its token is
//
//	v2.<key id>.<base64url(JSON payload)>.<base64url(Ed25519 signature)>
//
// base64url without padding, signed with the named key over
// "v2.<key id>.<base64url(JSON payload)>". The payload is
//
//	{"sourceNamespace":"src","sourceName":"disk","sourceUID":"…","targetNamespace":"dst",
//	 "targetName":"dv","targetUID":"…","requester":{"username":"alice","groups":["…"]},
//	 "issuer":"…","iat":1700000000,"exp":1700000600}
//
// with times in Unix seconds. Ed25519 splits the keys: datavolume-apiserver
// holds the private keys and signs; datavolume-controller holds only the
// public keys, so it can verify a grant but never make one.
//
// # Keys
//
// LoadKeySet reads either a directory or a single file of private keys;
// LoadPublicKeySet a directory of public keys.
//
// A directory is laid out like a mounted Secret or ConfigMap: every regular
// file (or symlink to one) is a key, its name the key id and its content a
// PEM Ed25519 key ("PRIVATE KEY", PKCS#8; or "PUBLIC KEY", PKIX); an id may
// hold only letters, digits, '-' and '_'. In a private key directory a file
// named "active" holds the id of the signing key (surrounding whitespace
// ignored); without it the lexically last id signs. Every other key still
// verifies, so a key is rotated by adding a new one (and its public key),
// making it active, and removing the old one once its grants are done with.
// Names starting with "." (a volume's "..data" links) are skipped.
// WatchKeySet and WatchPublicKeySet reload a directory when its files
// change, so keys rotate without a restart; a change that does not load
// keeps the keys loaded before.
//
// A single file is one key, active, its id the file's name.
//
// GenerateKey writes a new random private key file into such a directory;
// (*PublicKeySet).PEM gives the public key files.
package cloneauth
