package cloneauth

import (
	"bytes"
	"encoding/base64"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gotest.tools/v3/assert"
)

var issued = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func keySetOf(t *testing.T, active string, ids ...string) *KeySet {
	t.Helper()
	keys := map[string][]byte{}
	for _, id := range ids {
		keys[id] = bytes.Repeat([]byte(id[:1]), MinKeySize)
	}
	set, err := NewKeySet(active, keys)
	assert.NilError(t, err)
	return set
}

func testGrant() Grant {
	return NewGrant(crossNamespace(alice), "dv-uid", "datavolume-apiserver", issued, 10*time.Minute)
}

var grantTarget = Target{Namespace: "dst", Name: "dv", UID: "dv-uid", SourceNamespace: "src", SourceName: "disk"}

func sign(t *testing.T, set *KeySet, g Grant) string {
	t.Helper()
	token, err := set.Sign(g)
	assert.NilError(t, err)
	return token
}

func TestGrantRoundTrip(t *testing.T) {
	set := keySetOf(t, "a1", "a1")
	token := sign(t, set, testGrant())

	got, err := set.Verify(token, grantTarget, issued.Add(time.Minute))

	assert.NilError(t, err)
	assert.DeepEqual(t, got, Grant{
		SourceNamespace: "src", SourceName: "disk",
		TargetNamespace: "dst", TargetName: "dv", TargetUID: "dv-uid",
		Requester: alice,
		Issuer:    "datavolume-apiserver",
		IssuedAt:  issued, Expires: issued.Add(10 * time.Minute),
	})
	assert.Assert(t, strings.HasPrefix(token, "v2.a1."), token)
}

// The controller holds the public half only: it verifies, and cannot sign.
func TestPublicKeysVerifyWhatTheKeySetSigned(t *testing.T) {
	set := keySetOf(t, "a1", "a1")
	token := sign(t, set, testGrant())
	pems, err := set.Public().PEM()
	assert.NilError(t, err)
	dir := t.TempDir()
	for id, data := range pems {
		writeFile(t, filepath.Join(dir, id), data)
	}
	public, err := LoadPublicKeySet(dir)
	assert.NilError(t, err)
	got, err := public.Verify(token, grantTarget, issued)
	assert.NilError(t, err)
	assert.Equal(t, got.Requester.GetName(), "alice")
	assert.DeepEqual(t, public.KeyIDs(), []string{"a1"})
}

func TestSourceUIDIsBound(t *testing.T) {
	set := keySetOf(t, "a1", "a1")
	g := testGrant()
	g.SourceUID = "src-uid"
	token := sign(t, set, g)
	want := grantTarget
	want.SourceUID = "src-uid"
	_, err := set.Verify(token, want, issued)
	assert.NilError(t, err)
	// A claim of the same name made since is not the one the grant allows.
	want.SourceUID = "another-claim"
	_, err = set.Verify(token, want, issued)
	assert.ErrorIs(t, err, ErrGrantWrongSource)
	// A verifier that does not know the source's UID yet checks the rest.
	want.SourceUID = ""
	_, err = set.Verify(token, want, issued)
	assert.NilError(t, err)
}

// field replaces the i-th dot-separated field of token.
func withField(token string, i int, value string) string {
	fields := strings.Split(token, ".")
	fields[i] = value
	return strings.Join(fields, ".")
}

func TestVerifyRefuses(t *testing.T) {
	set := keySetOf(t, "a1", "a1")
	token := sign(t, set, testGrant())
	forger, err := NewKeySet("a1", map[string][]byte{"a1": bytes.Repeat([]byte("f"), MinKeySize)})
	assert.NilError(t, err)
	forged := sign(t, forger, testGrant())
	tamperedPayload := base64.RawURLEncoding.EncodeToString([]byte(
		`{"sourceNamespace":"secret","sourceName":"disk","targetNamespace":"dst","targetName":"dv","targetUID":"dv-uid","requester":{"username":"alice"},"iat":1772366400,"exp":1772367000}`))
	otherRequester := base64.RawURLEncoding.EncodeToString([]byte(
		`{"sourceNamespace":"src","sourceName":"disk","targetNamespace":"dst","targetName":"dv","targetUID":"dv-uid","requester":{"username":"system:admin","groups":["system:masters"]},"iat":1772366400,"exp":1772367000}`))
	v1 := "v1.a1." + strings.Split(token, ".")[2] + "." + strings.Split(token, ".")[3]
	inAMinute := issued.Add(time.Minute)

	for _, tc := range []struct {
		name    string
		token   string
		want    Target
		now     time.Time
		wantErr error
	}{
		{name: "empty token", token: "", wantErr: ErrGrantMissing},
		{name: "too few fields", token: "v2.a1.payload", wantErr: ErrGrantMalformed},
		{name: "too many fields", token: token + ".x", wantErr: ErrGrantMalformed},
		{name: "other version", token: withField(token, 0, "v3"), wantErr: ErrGrantMalformed},
		{name: "an HMAC grant of v1", token: v1, wantErr: ErrGrantMalformed},
		{name: "another requester", token: withField(token, 2, otherRequester), wantErr: ErrGrantBadSignature},
		{name: "signature not base64", token: withField(token, 3, "!!"), wantErr: ErrGrantMalformed},
		{name: "oversized", token: token + strings.Repeat("A", maxTokenSize), wantErr: ErrGrantMalformed},
		{name: "unknown key", token: withField(token, 1, "b1"), wantErr: ErrGrantUnknownKey},
		{name: "forged with another key of the same id", token: forged, wantErr: ErrGrantBadSignature},
		{name: "tampered payload", token: withField(token, 2, tamperedPayload), wantErr: ErrGrantBadSignature},
		{name: "truncated signature", token: withField(token, 3, strings.Split(token, ".")[3][:10]), wantErr: ErrGrantBadSignature},
		{name: "expired", token: token, now: issued.Add(10 * time.Minute), wantErr: ErrGrantExpired},
		{name: "not yet valid", token: token, now: issued.Add(-time.Hour), wantErr: ErrGrantNotYetValid},
		{name: "other target UID", token: token, want: Target{Namespace: "dst", Name: "dv", UID: "other", SourceNamespace: "src", SourceName: "disk"}, wantErr: ErrGrantWrongTarget},
		{name: "other target name", token: token, want: Target{Namespace: "dst", Name: "other", UID: "dv-uid", SourceNamespace: "src", SourceName: "disk"}, wantErr: ErrGrantWrongTarget},
		{name: "other target namespace", token: token, want: Target{Namespace: "other", Name: "dv", UID: "dv-uid", SourceNamespace: "src", SourceName: "disk"}, wantErr: ErrGrantWrongTarget},
		{name: "no target UID expected", token: token, want: Target{Namespace: "dst", Name: "dv", SourceNamespace: "src", SourceName: "disk"}, wantErr: ErrGrantWrongTarget},
		{name: "other source name", token: token, want: Target{Namespace: "dst", Name: "dv", UID: "dv-uid", SourceNamespace: "src", SourceName: "other"}, wantErr: ErrGrantWrongSource},
		{name: "other source namespace", token: token, want: Target{Namespace: "dst", Name: "dv", UID: "dv-uid", SourceNamespace: "other", SourceName: "disk"}, wantErr: ErrGrantWrongSource},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want, now := tc.want, tc.now
			if want == (Target{}) {
				want = grantTarget
			}
			if now.IsZero() {
				now = inAMinute
			}

			_, err := set.Verify(tc.token, want, now)

			assert.ErrorIs(t, err, tc.wantErr)
		})
	}
}

func TestVerifyAllowsSignerClockAhead(t *testing.T) {
	set := keySetOf(t, "a1", "a1")

	_, err := set.Verify(sign(t, set, testGrant()), grantTarget, issued.Add(-ClockSkew/2))

	assert.NilError(t, err)
}

func TestSignRefusesIncompleteGrant(t *testing.T) {
	set := keySetOf(t, "a1", "a1")
	for _, tc := range []struct {
		name  string
		spoil func(*Grant)
	}{
		{name: "no source", spoil: func(g *Grant) { g.SourceName = "" }},
		{name: "no source namespace", spoil: func(g *Grant) { g.SourceNamespace = "" }},
		{name: "no target", spoil: func(g *Grant) { g.TargetNamespace = "" }},
		{name: "no target UID", spoil: func(g *Grant) { g.TargetUID = "" }},
		{name: "no requester", spoil: func(g *Grant) { g.Requester = nil }},
		{name: "no issue time", spoil: func(g *Grant) { g.IssuedAt = time.Time{} }},
		{name: "expires when issued", spoil: func(g *Grant) { g.Expires = g.IssuedAt.Add(500 * time.Millisecond) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := testGrant()
			tc.spoil(&g)

			_, err := set.Sign(g)

			assert.ErrorIs(t, err, ErrInvalidGrant)
		})
	}
}

func TestErrorsSayWhatIsWrong(t *testing.T) {
	set := keySetOf(t, "a1", "a1")
	token := sign(t, set, testGrant())

	_, err := set.Verify(token, grantTarget, issued.Add(time.Hour))
	assert.Error(t, err, "clone grant expired: at 2026-03-01T12:10:00Z")

	_, err = set.Verify(token, Target{Namespace: "dst", Name: "dv", UID: "new-uid", SourceNamespace: "src", SourceName: "disk"}, issued)
	assert.Error(t, err, "clone grant is for another target: grant for DataVolume dst/dv (uid dv-uid), not dst/dv (uid new-uid)")
}
