package cloneauth

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"gotest.tools/v3/assert"
)

// kubeletVolume writes files the way the kubelet updates a mounted Secret or
// ConfigMap: into a new timestamped directory, then swaps the "..data" link
// to it; the key files are links through "..data".
type kubeletVolume struct {
	dir string
	n   int
}

func (v *kubeletVolume) write(t *testing.T, files map[string][]byte) {
	t.Helper()
	v.n++
	version := "..2026_03_01_" + strings.Repeat("x", v.n)
	for name, data := range files {
		writeFile(t, filepath.Join(v.dir, version, name), data)
	}
	tmp := filepath.Join(v.dir, "..data_tmp")
	assert.NilError(t, os.Symlink(version, tmp))
	assert.NilError(t, os.Rename(tmp, filepath.Join(v.dir, "..data")))
	entries, err := os.ReadDir(v.dir)
	assert.NilError(t, err)
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), ".") {
			assert.NilError(t, os.Remove(filepath.Join(v.dir, e.Name())))
		}
	}
	for name := range files {
		assert.NilError(t, os.Symlink(filepath.Join("..data", name), filepath.Join(v.dir, name)))
	}
}

func TestKeysRotateWithoutARestart(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	first, second := pemKey(t), pemKey(t)
	private := &kubeletVolume{dir: t.TempDir()}
	private.write(t, map[string][]byte{"k1": first})
	signer, err := WatchKeySet(ctx, private.dir, 10*time.Millisecond, logr.Discard())
	assert.NilError(t, err)
	publicFiles := func(set *KeySet) map[string][]byte {
		pems, err := set.Public().PEM()
		assert.NilError(t, err)
		return pems
	}
	public := &kubeletVolume{dir: t.TempDir()}
	public.write(t, publicFiles(signer.Current()))
	verifier, err := WatchPublicKeySet(ctx, public.dir, 10*time.Millisecond, logr.Discard())
	assert.NilError(t, err)
	oldToken, err := signer.Sign(testGrant())
	assert.NilError(t, err)

	// Add a key and make it active: both sides pick it up; old grants still verify.
	private.write(t, map[string][]byte{"k1": first, "k2": second, "active": []byte("k2")})
	eventuallyTrue(t, func() bool { return signer.Current().ActiveKeyID() == "k2" })
	public.write(t, publicFiles(signer.Current()))
	eventuallyTrue(t, func() bool { return len(verifier.Current().KeyIDs()) == 2 })
	newToken, err := signer.Sign(testGrant())
	assert.NilError(t, err)
	assert.Assert(t, strings.HasPrefix(newToken, "v2.k2."), newToken)
	_, err = verifier.Verify(newToken, grantTarget, issued)
	assert.NilError(t, err)
	_, err = verifier.Verify(oldToken, grantTarget, issued)
	assert.NilError(t, err)

	// Retire the old key: its grants no longer verify.
	public.write(t, map[string][]byte{"k2": publicFiles(signer.Current())["k2"]})
	eventuallyTrue(t, func() bool { return len(verifier.Current().KeyIDs()) == 1 })
	_, err = verifier.Verify(oldToken, grantTarget, issued)
	assert.ErrorIs(t, err, ErrGrantUnknownKey)

	// A broken update keeps the last good keys.
	public.write(t, map[string][]byte{"k3": []byte("not a key")})
	time.Sleep(100 * time.Millisecond)
	assert.DeepEqual(t, verifier.Current().KeyIDs(), []string{"k2"})
	_, err = verifier.Verify(newToken, grantTarget, issued)
	assert.NilError(t, err)
}

func eventuallyTrue(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("not reloaded within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
