package cloneauth

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apiserver/pkg/authentication/user"
)

// tokenVersion is the first field of every token; a new format gets a new one.
const tokenVersion = "v2"

// maxTokenSize bounds the work done on a token before its signature is
// checked; a requester with many groups and extra values is the largest.
const maxTokenSize = 16 << 10

// ClockSkew is how far ahead of the verifier's clock a grant may have been
// issued, for a signer on another node.
const ClockSkew = 30 * time.Second

var encoding = base64.RawURLEncoding

// Grant allows one clone: the source claim into the target DataVolume with
// this UID, until Expires. Times have a second's precision.
type Grant struct {
	SourceNamespace, SourceName string
	// SourceUID binds the source claim when it existed at create; empty,
	// the controller binds the claim it finds before data moves.
	SourceUID                   types.UID
	TargetNamespace, TargetName string
	TargetUID                   types.UID
	// Requester is who created the DataVolume, as authenticated then: the
	// controller asks again for them right before data moves.
	Requester         user.Info
	Issuer            string
	IssuedAt, Expires time.Time
}

// Target is what a verifier expects a grant to be for. A SourceUID set on
// both the grant and the target must match.
type Target struct {
	Namespace, Name string
	UID             types.UID
	SourceNamespace string
	SourceName      string
	SourceUID       types.UID
}

// NewGrant is the grant for an allowed req into the DataVolume with
// targetUID, valid for ttl from now.
func NewGrant(req Request, targetUID types.UID, issuer string, now time.Time, ttl time.Duration) Grant {
	return Grant{
		SourceNamespace: req.SourceNamespace,
		SourceName:      req.SourceName,
		TargetNamespace: req.TargetNamespace,
		TargetName:      req.TargetName,
		TargetUID:       targetUID,
		Requester:       req.User,
		Issuer:          issuer,
		IssuedAt:        now,
		Expires:         now.Add(ttl),
	}
}

// payload is a grant as signed.
type payload struct {
	SourceNamespace string     `json:"sourceNamespace"`
	SourceName      string     `json:"sourceName"`
	SourceUID       types.UID  `json:"sourceUID,omitempty"`
	TargetNamespace string     `json:"targetNamespace"`
	TargetName      string     `json:"targetName"`
	TargetUID       types.UID  `json:"targetUID"`
	Requester       *requester `json:"requester"`
	Issuer          string     `json:"issuer,omitempty"`
	IssuedAt        int64      `json:"iat"`
	Expires         int64      `json:"exp"`
}

// requester is who created the DataVolume, as authenticated.
type requester struct {
	Username string              `json:"username"`
	UID      string              `json:"uid,omitempty"`
	Groups   []string            `json:"groups,omitempty"`
	Extra    map[string][]string `json:"extra,omitempty"`
}

func requesterOf(u user.Info) *requester {
	if u == nil {
		return nil
	}
	return &requester{Username: u.GetName(), UID: u.GetUID(), Groups: u.GetGroups(), Extra: u.GetExtra()}
}

func (r *requester) info() user.Info {
	return &user.DefaultInfo{Name: r.Username, UID: r.UID, Groups: r.Groups, Extra: r.Extra}
}

func (g Grant) validate() error {
	switch {
	case g.SourceNamespace == "" || g.SourceName == "":
		return fmt.Errorf("%w: no source", ErrInvalidGrant)
	case g.TargetNamespace == "" || g.TargetName == "":
		return fmt.Errorf("%w: no target", ErrInvalidGrant)
	case g.TargetUID == "":
		return fmt.Errorf("%w: no target UID", ErrInvalidGrant)
	case g.Requester == nil || g.Requester.GetName() == "":
		return fmt.Errorf("%w: no requester", ErrInvalidGrant)
	case g.IssuedAt.IsZero() || g.Expires.IsZero():
		return fmt.Errorf("%w: no issue or expiry time", ErrInvalidGrant)
	case !g.Expires.After(g.IssuedAt):
		return fmt.Errorf("%w: expires %s, not after it is issued %s", ErrInvalidGrant, g.Expires, g.IssuedAt)
	}
	return nil
}

// Sign returns the token of g, signed with the active key.
func (s *KeySet) Sign(g Grant) (string, error) {
	return signWith(s.keys[s.active], s.active, g)
}

func signWith(key ed25519.PrivateKey, keyID string, g Grant) (string, error) {
	// Validate what will be signed: whole seconds.
	g.IssuedAt, g.Expires = time.Unix(g.IssuedAt.Unix(), 0), time.Unix(g.Expires.Unix(), 0)
	if err := g.validate(); err != nil {
		return "", err
	}
	body, err := json.Marshal(payload{
		SourceNamespace: g.SourceNamespace,
		SourceName:      g.SourceName,
		SourceUID:       g.SourceUID,
		TargetNamespace: g.TargetNamespace,
		TargetName:      g.TargetName,
		TargetUID:       g.TargetUID,
		Requester:       requesterOf(g.Requester),
		Issuer:          g.Issuer,
		IssuedAt:        g.IssuedAt.Unix(),
		Expires:         g.Expires.Unix(),
	})
	if err != nil {
		return "", fmt.Errorf("encoding clone grant: %w", err)
	}
	signed := tokenVersion + "." + keyID + "." + encoding.EncodeToString(body)
	if len(signed) > maxTokenSize {
		return "", fmt.Errorf("%w: %d bytes, more than %d", ErrInvalidGrant, len(signed), maxTokenSize)
	}
	return signed + "." + encoding.EncodeToString(ed25519.Sign(key, []byte(signed))), nil
}

// Verify returns the grant of token if a key of the set signed it, it is
// valid at now, and it is for want; otherwise an error that errors.Is one of
// the ErrGrant errors.
func (s *KeySet) Verify(token string, want Target, now time.Time) (Grant, error) {
	return s.public.Verify(token, want, now)
}

// Verify returns the grant of token if a key of the set signed it, it is
// valid at now (for a DataVolume, its creation), and it is for want;
// otherwise an error that errors.Is one of the ErrGrant errors.
func (s *PublicKeySet) Verify(token string, want Target, now time.Time) (Grant, error) {
	g, err := s.open(token)
	if err != nil {
		return Grant{}, err
	}
	if now.Add(ClockSkew).Before(g.IssuedAt) {
		return Grant{}, fmt.Errorf("%w: issued at %s, now is %s", ErrGrantNotYetValid, g.IssuedAt.Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	if !now.Before(g.Expires) {
		return Grant{}, fmt.Errorf("%w: at %s", ErrGrantExpired, g.Expires.Format(time.RFC3339))
	}
	if g.TargetNamespace != want.Namespace || g.TargetName != want.Name || g.TargetUID != want.UID {
		return Grant{}, fmt.Errorf("%w: grant for DataVolume %s/%s (uid %s), not %s/%s (uid %s)",
			ErrGrantWrongTarget, g.TargetNamespace, g.TargetName, g.TargetUID, want.Namespace, want.Name, want.UID)
	}
	if g.SourceNamespace != want.SourceNamespace || g.SourceName != want.SourceName {
		return Grant{}, fmt.Errorf("%w: grant for PersistentVolumeClaim %s/%s, not %s/%s",
			ErrGrantWrongSource, g.SourceNamespace, g.SourceName, want.SourceNamespace, want.SourceName)
	}
	if g.SourceUID != "" && want.SourceUID != "" && g.SourceUID != want.SourceUID {
		return Grant{}, fmt.Errorf("%w: grant for PersistentVolumeClaim %s/%s with UID %s, not UID %s",
			ErrGrantWrongSource, g.SourceNamespace, g.SourceName, g.SourceUID, want.SourceUID)
	}
	return g, nil
}

// open checks the token's signature and decodes its grant.
func (s *PublicKeySet) open(token string) (Grant, error) {
	if token == "" {
		return Grant{}, ErrGrantMissing
	}
	if len(token) > maxTokenSize {
		return Grant{}, fmt.Errorf("%w: %d bytes, more than %d", ErrGrantMalformed, len(token), maxTokenSize)
	}
	fields := strings.Split(token, ".")
	if len(fields) != 4 {
		return Grant{}, fmt.Errorf("%w: want 4 dot-separated fields, got %d", ErrGrantMalformed, len(fields))
	}
	version, keyID, body, signature := fields[0], fields[1], fields[2], fields[3]
	if version != tokenVersion {
		return Grant{}, fmt.Errorf("%w: version %q, want %q", ErrGrantMalformed, version, tokenVersion)
	}
	key, ok := s.keys[keyID]
	if !ok {
		return Grant{}, fmt.Errorf("%w: key id %q", ErrGrantUnknownKey, keyID)
	}
	sig, err := encoding.DecodeString(signature)
	if err != nil {
		return Grant{}, fmt.Errorf("%w: signature: %v", ErrGrantMalformed, err)
	}
	if !ed25519.Verify(key, []byte(version+"."+keyID+"."+body), sig) {
		return Grant{}, fmt.Errorf("%w: key id %q", ErrGrantBadSignature, keyID)
	}
	decoded, err := encoding.DecodeString(body)
	if err != nil {
		return Grant{}, fmt.Errorf("%w: payload: %v", ErrGrantMalformed, err)
	}
	var p payload
	decoder := json.NewDecoder(bytes.NewReader(decoded))
	decoder.DisallowUnknownFields()
	if err := decoder.Decode(&p); err != nil {
		return Grant{}, fmt.Errorf("%w: payload: %v", ErrGrantMalformed, err)
	}
	g := Grant{
		SourceNamespace: p.SourceNamespace,
		SourceName:      p.SourceName,
		SourceUID:       p.SourceUID,
		TargetNamespace: p.TargetNamespace,
		TargetName:      p.TargetName,
		TargetUID:       p.TargetUID,
		Requester:       requesterInfo(p.Requester),
		Issuer:          p.Issuer,
		IssuedAt:        time.Unix(p.IssuedAt, 0).UTC(),
		Expires:         time.Unix(p.Expires, 0).UTC(),
	}
	if err := g.validate(); err != nil {
		return Grant{}, fmt.Errorf("%w: %v", ErrGrantMalformed, err)
	}
	return g, nil
}

func requesterInfo(r *requester) user.Info {
	if r == nil {
		return nil
	}
	return r.info()
}
