package cloneauth

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gotest.tools/v3/assert"
)

func writeFile(t *testing.T, path string, content []byte) {
	t.Helper()
	assert.NilError(t, os.MkdirAll(filepath.Dir(path), 0o700))
	assert.NilError(t, os.WriteFile(path, content, 0o600))
}

func TestKeyRotation(t *testing.T) {
	dir := t.TempDir()
	assert.NilError(t, GenerateKey(dir, "2026-01"))
	oldSet, err := LoadKeySet(dir)
	assert.NilError(t, err)
	oldToken := sign(t, oldSet, testGrant())

	// A new key, lexically last, signs; the old one still verifies.
	assert.NilError(t, GenerateKey(dir, "2026-02"))
	overlap, err := LoadKeySet(dir)
	assert.NilError(t, err)
	assert.Equal(t, overlap.ActiveKeyID(), "2026-02")
	newToken := sign(t, overlap, testGrant())
	assert.Assert(t, strings.HasPrefix(newToken, "v2.2026-02."), newToken)
	_, err = overlap.Verify(oldToken, grantTarget, issued)
	assert.NilError(t, err)

	// Once the old key is gone its grants fail and the new ones hold.
	assert.NilError(t, os.Remove(filepath.Join(dir, "2026-01")))
	rotated, err := LoadKeySet(dir)
	assert.NilError(t, err)
	_, err = rotated.Verify(oldToken, grantTarget, issued)
	assert.ErrorIs(t, err, ErrGrantUnknownKey)
	_, err = rotated.Verify(newToken, grantTarget, issued)
	assert.NilError(t, err)
}

// pemKey is a PEM PKCS#8 Ed25519 private key, as GenerateKey writes one.
func pemKey(t *testing.T) []byte {
	t.Helper()
	dir := t.TempDir()
	assert.NilError(t, GenerateKey(dir, "k"))
	data, err := os.ReadFile(filepath.Join(dir, "k"))
	assert.NilError(t, err)
	return data
}

func TestLoadKeySet(t *testing.T) {
	key := pemKey(t)
	raw := bytes.Repeat([]byte("k"), MinKeySize)
	for _, tc := range []struct {
		name       string
		files      map[string][]byte // relative path → content
		path       string            // relative to the temp dir; the dir itself if empty
		wantActive string
		wantIDs    []string
		wantErr    error
	}{
		{
			name:       "lexically last key signs",
			files:      map[string][]byte{"a": key, "c": key, "b": key},
			wantActive: "c",
			wantIDs:    []string{"a", "b", "c"},
		},
		{
			name:       "active file names the signing key",
			files:      map[string][]byte{"a": key, "b": key, "active": []byte("a\n")},
			wantActive: "a",
			wantIDs:    []string{"a", "b"},
		},
		{
			name:       "secret volume links are skipped",
			files:      map[string][]byte{"k1": key, "..data/k1": key, ".hidden": []byte("x"), "sub/k2": key},
			wantActive: "k1",
			wantIDs:    []string{"k1"},
		},
		{
			name:       "single file is one active key",
			files:      map[string][]byte{"only": key},
			path:       "only",
			wantActive: "only",
			wantIDs:    []string{"only"},
		},
		{
			name:    "a raw (HMAC) key refused",
			files:   map[string][]byte{"a": key, "raw": raw},
			wantErr: ErrInvalidKey,
		},
		{
			name:    "a truncated single key refused",
			files:   map[string][]byte{"short": key[:len(key)/2]},
			path:    "short",
			wantErr: ErrInvalidKey,
		},
		{
			name:    "key id with a dot refused",
			files:   map[string][]byte{"key.old": key},
			wantErr: ErrInvalidKey,
		},
		{
			name:    "active names a missing key",
			files:   map[string][]byte{"a": key, "active": []byte("gone")},
			wantErr: ErrInvalidKey,
		},
		{
			name:    "empty directory",
			files:   map[string][]byte{"active": []byte("a")},
			wantErr: ErrNoKeys,
		},
		{
			name:    "missing path",
			path:    "nowhere",
			wantErr: fs.ErrNotExist,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, content := range tc.files {
				writeFile(t, filepath.Join(dir, name), content)
			}

			set, err := LoadKeySet(filepath.Join(dir, tc.path))

			if tc.wantErr != nil {
				assert.ErrorIs(t, err, tc.wantErr)
				return
			}
			assert.NilError(t, err)
			assert.Equal(t, set.ActiveKeyID(), tc.wantActive)
			assert.DeepEqual(t, set.KeyIDs(), tc.wantIDs)
		})
	}
}

func TestLoadKeySetFollowsSecretVolumeLinks(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "..2026_03_01", "k1"), pemKey(t))
	assert.NilError(t, os.Symlink("..2026_03_01", filepath.Join(dir, "..data")))
	assert.NilError(t, os.Symlink(filepath.Join("..data", "k1"), filepath.Join(dir, "k1")))

	set, err := LoadKeySet(dir)

	assert.NilError(t, err)
	assert.DeepEqual(t, set.KeyIDs(), []string{"k1"})
}

func TestGenerateKey(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")

	assert.NilError(t, GenerateKey(dir, "k1"))

	info, err := os.Stat(filepath.Join(dir, "k1"))
	assert.NilError(t, err)
	assert.Equal(t, info.Mode().Perm(), fs.FileMode(0o600))
	set, err := LoadKeySet(filepath.Join(dir, "k1"))
	assert.NilError(t, err, "a PEM Ed25519 private key")
	assert.Equal(t, set.ActiveKeyID(), "k1")
	_ = info
	assert.ErrorIs(t, GenerateKey(dir, "k1"), fs.ErrExist)
	assert.ErrorIs(t, GenerateKey(dir, "bad.id"), ErrInvalidKey)
}

func TestGeneratedKeysDiffer(t *testing.T) {
	dir := t.TempDir()
	assert.NilError(t, GenerateKey(dir, "a"))
	assert.NilError(t, GenerateKey(dir, "b"))

	a, err := os.ReadFile(filepath.Join(dir, "a"))
	assert.NilError(t, err)
	b, err := os.ReadFile(filepath.Join(dir, "b"))
	assert.NilError(t, err)
	assert.Assert(t, !bytes.Equal(a, b))
}

func TestNewKeySetCopiesKeys(t *testing.T) {
	key := bytes.Repeat([]byte("k"), MinKeySize)
	set, err := NewKeySet("k", map[string][]byte{"k": key})
	assert.NilError(t, err)
	token := sign(t, set, testGrant())

	key[0] = 'x'

	_, err = set.Verify(token, grantTarget, issued.Add(time.Second))
	assert.NilError(t, err)
}

func TestNewKeySetRefusesEmpty(t *testing.T) {
	_, err := NewKeySet("", nil)

	assert.ErrorIs(t, err, ErrNoKeys)
}
