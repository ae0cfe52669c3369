package main

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
)

func serve(t *testing.T) (*httptest.Server, []byte) {
	t.Helper()
	dir := t.TempDir()
	disk := bytes.Repeat([]byte("QFI\xfbdemo"), 1<<14)
	assert.NilError(t, os.WriteFile(filepath.Join(dir, "demo-disk.qcow2"), disk, 0o644))
	assert.NilError(t, os.Mkdir(filepath.Join(dir, "sub"), 0o755))
	outside := filepath.Join(t.TempDir(), "secret")
	assert.NilError(t, os.WriteFile(outside, []byte("not served"), 0o644))
	assert.NilError(t, os.Symlink(outside, filepath.Join(dir, "escape")))
	root, err := os.OpenRoot(dir)
	assert.NilError(t, err)
	t.Cleanup(func() { root.Close() })
	srv := httptest.NewServer(newHandler(root))
	t.Cleanup(srv.Close)
	return srv, disk
}

func get(t *testing.T, url string, header map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	assert.NilError(t, err)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	assert.NilError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	assert.NilError(t, err)
	return resp, body
}

func TestServesTheWholeFile(t *testing.T) {
	srv, disk := serve(t)
	resp, body := get(t, srv.URL+"/demo-disk.qcow2", nil)
	assert.Equal(t, resp.StatusCode, http.StatusOK)
	assert.Equal(t, resp.Header.Get("Accept-Ranges"), "bytes")
	assert.Equal(t, resp.ContentLength, int64(len(disk)))
	assert.Assert(t, bytes.Equal(body, disk))
}

func TestServesRanges(t *testing.T) {
	srv, disk := serve(t)
	resp, body := get(t, srv.URL+"/demo-disk.qcow2", map[string]string{"Range": "bytes=4-11"})
	assert.Equal(t, resp.StatusCode, http.StatusPartialContent)
	assert.Equal(t, resp.Header.Get("Content-Range"), "bytes 4-11/131072")
	assert.Assert(t, bytes.Equal(body, disk[4:12]))

	resp, _ = get(t, srv.URL+"/demo-disk.qcow2", map[string]string{"Range": "bytes=200000-"})
	assert.Equal(t, resp.StatusCode, http.StatusRequestedRangeNotSatisfiable)
}

func TestServesOnlyRegularFilesInTheDirectory(t *testing.T) {
	srv, _ := serve(t)
	for _, path := range []string{"/missing.qcow2", "/sub", "/escape", "/../main.go", "/sub/x"} {
		resp, _ := get(t, srv.URL+path, nil)
		assert.Check(t, is.Equal(resp.StatusCode, http.StatusNotFound), path)
	}
	resp, body := get(t, srv.URL+"/", nil)
	assert.Equal(t, resp.StatusCode, http.StatusOK)
	assert.Equal(t, string(body), "demo-disk.qcow2\n", "the index lists regular files only")
	resp, _ = get(t, srv.URL+"/healthz", nil)
	assert.Equal(t, resp.StatusCode, http.StatusOK)
}
