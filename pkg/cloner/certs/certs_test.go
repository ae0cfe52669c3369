package certs_test

import (
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"gotest.tools/v3/assert"

	"github.com/datavolume/datavolume/pkg/cloner/certs"
)

// mountLike lays out files as the kubelet mounts a ConfigMap: the data in
// a timestamped directory, "..data" pointing at it, and each key a
// symlink through "..data".
func mountLike(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	data := filepath.Join(dir, "..2026_12_02_10_00_00.123456789")
	assert.NilError(t, os.Mkdir(data, 0o755))
	for name, content := range files {
		assert.NilError(t, os.WriteFile(filepath.Join(data, name), []byte(content), 0o644))
		assert.NilError(t, os.Symlink(filepath.Join("..data", name), filepath.Join(dir, name)))
	}
	assert.NilError(t, os.Symlink(filepath.Base(data), filepath.Join(dir, "..data")))
	return dir
}

// TestSystemPoolWithDirectory trusts a CA from a ConfigMap mounted whole,
// under any key, next to keys that hold no certificate.
func TestSystemPoolWithDirectory(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	defer srv.Close()
	caPEM := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}))

	dir := mountLike(t, map[string]string{"any-key-name": caPEM, "notes.txt": "not a certificate\n"})
	files, err := certs.VolumeFiles(dir)
	assert.NilError(t, err)
	assert.DeepEqual(t, files, []string{filepath.Join(dir, "any-key-name"), filepath.Join(dir, "notes.txt")})

	pool, err := certs.SystemPoolWith(dir)
	assert.NilError(t, err)
	_, err = srv.Certificate().Verify(x509.VerifyOptions{Roots: pool, DNSName: "example.com"})
	assert.NilError(t, err, "the CA from the directory is trusted")

	single, err := certs.SystemPoolWith(filepath.Join(dir, "any-key-name"))
	assert.NilError(t, err)
	_, err = srv.Certificate().Verify(x509.VerifyOptions{Roots: single, DNSName: "example.com"})
	assert.NilError(t, err, "a single file still works")

	_, err = certs.SystemPoolWith(mountLike(t, map[string]string{"ca.crt": "garbage"}))
	assert.ErrorContains(t, err, "holds no PEM certificate")
	_, err = certs.SystemPoolWith(filepath.Join(dir, "absent"))
	assert.ErrorContains(t, err, "no such file")
}
