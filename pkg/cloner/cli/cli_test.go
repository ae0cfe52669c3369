package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gotest.tools/v3/assert"

	"github.com/datavolume/datavolume/pkg/cloner/cli"
	"github.com/datavolume/datavolume/pkg/cloner/internal/testenv"
	"github.com/datavolume/datavolume/pkg/cloner/progress"
)

type run struct {
	code           int
	stdout, stderr string
}

func runCLI(args ...string) run {
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	code := cli.Main(ctx, args, &out, &errOut)
	return run{code, out.String(), errOut.String()}
}

func TestHelp(t *testing.T) {
	r := runCLI("--help")
	assert.Equal(t, r.code, 0)
	for _, cmd := range []string{"import", "upload-server", "clone-source", "clone-target", "clone", "blank", "gen-certs"} {
		assert.Assert(t, strings.Contains(r.stdout, "  "+cmd+" "), "help lists %s:\n%s", cmd, r.stdout)
		sub := runCLI(cmd, "--help")
		assert.Equal(t, sub.code, 0)
		assert.Assert(t, strings.Contains(sub.stdout, "--progress-file"), "%s --help documents its flags", cmd)
		assert.Assert(t, strings.Contains(sub.stdout, "--termination-log"), "%s --help documents --termination-log", cmd)
		assert.Assert(t, !strings.Contains(sub.stdout, "test-delay"), "the test-only flag stays out of %s --help:\n%s", cmd, sub.stdout)
	}
}

// TestUsageErrors: bad invocations exit non-zero with one clear line.
func TestUsageErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args    []string
		wantErr string
	}{
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"import", "--target", dir + "/disk.img"}, "--url is required"},
		{[]string{"import", "--url", "http://x/", "--target", dir}, "is a directory: give the disk image file"},
		{[]string{"import", "--url", "http://x/", "--target", dir + "/disk.img", "--target-size", "lots"}, "want a quantity such as 10Gi"},
		{[]string{"import", "--url", "http://x/", "--target", dir + "/d", "--checksum", "crc:00"}, `checksum algorithm "crc"`},
		{[]string{"import", "--url", "docker://r/x", "--target", dir, "--content-type", "archive"}, "archive content cannot be imported from a registry"},
		{[]string{"upload-server", "--tls-cert", "c", "--tls-key", "k", "--client-ca", "ca", "--target", dir, "--content-type", "archive"}, "archive content cannot be uploaded"},
		{[]string{"upload-server", "--tls-cert", "c", "--tls-key", "k", "--target", dir + "/disk.img"}, "--client-ca is required"},
		{[]string{"clone-source", "--source", "x", "--target-address", "h:1"}, "clones use mutual TLS"},
		{[]string{"clone", "--target", dir + "/disk.img"}, "--source is required"},
		{[]string{"clone", "--source", dir, "--target", dir + "/disk.img"}, "is a directory: give the disk image file"},
		{[]string{"clone", "--source", dir + "/disk.img", "--target", dir, "--content-type", "archive"}, "must be a directory for archive content"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			r := runCLI(tc.args...)
			assert.Equal(t, r.code, 2, "a usage error")
			assert.Equal(t, strings.Count(r.stderr, "\n"), 1, "one error line: %q", r.stderr)
			assert.Assert(t, strings.Contains(r.stderr, tc.wantErr), "%q", r.stderr)
		})
	}
}

func writeSecret(t *testing.T, dir, name, value string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	assert.NilError(t, os.WriteFile(p, []byte(value+"\n"), 0o600))
	return p
}

// TestImport runs the import command end to end with basic auth from
// files, a custom CA, a progress file and the metrics endpoint, then a
// failing one; the password must never show up in its output.
func TestImport(t *testing.T) {
	testenv.RequireTools(t, "gzip")
	images := t.TempDir()
	raw := filepath.Join(images, "disk.raw")
	testenv.WriteDisk(t, raw, 8<<20, 11)
	testenv.Shell(t, "gzip -k "+raw)
	srv := testenv.FileServer(t, images, nil)
	secrets := t.TempDir()
	user := writeSecret(t, secrets, "user", srv.Username)
	pass := writeSecret(t, secrets, "pass", srv.Password)
	wrong := writeSecret(t, secrets, "wrong", "Not-The-Pa55word")

	vol := t.TempDir()
	target := filepath.Join(vol, "disk.img")
	progressFile := filepath.Join(t.TempDir(), "progress.json")
	port := testenv.FreePort(t)
	metrics := make(chan string, 1)
	go func() { // scrape while the import runs
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
			if err == nil {
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				metrics <- string(body)
				return
			}
			time.Sleep(time.Millisecond)
		}
		metrics <- ""
	}()
	r := runCLI("import", "--url", srv.URL+"/disk.raw.gz", "--target", target, "--target-size", "16Mi",
		"--ca-file", srv.CAFile, "--username-file", user, "--password-file", pass,
		"--checksum", testenv.SHA256(t, raw+".gz"),
		"--progress-file", progressFile, "--metrics-address", fmt.Sprintf("127.0.0.1:%d", port), "--owner-uid", "dv-uid", "-v", "5")
	assert.Equal(t, r.code, 0, "stderr: %s", r.stderr)
	assert.Equal(t, r.stderr, "")
	testenv.AssertSameDisk(t, target, raw)
	fi, err := os.Stat(target)
	assert.NilError(t, err)
	assert.Equal(t, fi.Size(), int64(16<<20))

	assertSucceeded(t, progressFile)
	assert.Assert(t, strings.Contains(<-metrics, `datavolume_cloner_progress_percent{ownerUID="dv-uid"}`))

	failed := runCLI("import", "--url", srv.URL+"/disk.raw.gz", "--target", filepath.Join(vol, "other.img"),
		"--ca-file", srv.CAFile, "--username-file", user, "--password-file", wrong, "--progress-file", progressFile, "-v", "5")
	assert.Equal(t, failed.code, 1)
	assert.Equal(t, strings.Count(failed.stderr, "\n"), 1, "%q", failed.stderr)
	assert.Assert(t, strings.Contains(failed.stderr, "HTTP 401 Unauthorized: the credentials were refused"), failed.stderr)
	data, err := os.ReadFile(progressFile)
	assert.NilError(t, err)
	assert.Assert(t, strings.Contains(string(data), `"phase":"Failed"`))
	for _, out := range []string{r.stdout, r.stderr, failed.stdout, failed.stderr} {
		assert.Assert(t, !strings.Contains(out, srv.Password) && !strings.Contains(out, "Not-The-Pa55word"), "credentials leaked:\n%s", out)
	}
	entries, err := os.ReadDir(vol)
	assert.NilError(t, err)
	assert.Equal(t, len(entries), 1, "the failed import left nothing")
}

func TestClone(t *testing.T) {
	dir := t.TempDir()
	certDir := filepath.Join(dir, "certs")
	assert.Equal(t, runCLI("gen-certs", "--dir", certDir).code, 0)
	src := filepath.Join(dir, "src.img")
	testenv.WriteDisk(t, src, 8<<20, 13)
	target := filepath.Join(t.TempDir(), "disk.img")
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	done := make(chan run, 1)
	go func() {
		done <- runCLI("clone-target", "--listen", addr, "--target", target,
			"--tls-cert", filepath.Join(certDir, "server.crt"), "--tls-key", filepath.Join(certDir, "server.key"), "--tls-ca", filepath.Join(certDir, "ca.crt"))
	}()
	s := runCLI("clone-source", "--source", src, "--target-address", addr,
		"--tls-cert", filepath.Join(certDir, "client.crt"), "--tls-key", filepath.Join(certDir, "client.key"), "--tls-ca", filepath.Join(certDir, "ca.crt"))
	assert.Equal(t, s.code, 0, s.stderr)
	tr := <-done
	assert.Equal(t, tr.code, 0, tr.stderr)
	testenv.AssertSameDisk(t, target, src)
}

// TestCloneLocalHelp: clone documents its flags like the other commands.
func TestCloneLocalHelp(t *testing.T) {
	r := runCLI("clone", "--help")
	assert.Equal(t, r.code, 0)
	assert.Assert(t, strings.Contains(r.stdout, "no network, no TLS"), r.stdout)
	for _, flag := range []string{"--source", "--target", "--content-type", "--target-size", "--progress-file", "--metrics-address"} {
		assert.Assert(t, strings.Contains(r.stdout, flag+" "), "clone --help lists %s:\n%s", flag, r.stdout)
	}
}

// TestCloneLocal copies a disk within one process, with a progress file,
// then fails one into a target too small: one error line, nothing left.
func TestCloneLocal(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src.img")
	testenv.WriteDisk(t, src, 8<<20, 17)
	vol := t.TempDir()
	target := filepath.Join(vol, "disk.img")
	progressFile := filepath.Join(dir, "progress.json")
	r := runCLI("clone", "--source", src, "--target", target, "--progress-file", progressFile)
	assert.Equal(t, r.code, 0, r.stderr)
	assert.Equal(t, r.stderr, "")
	testenv.AssertSameDisk(t, target, src)
	assertSucceeded(t, progressFile)

	small := t.TempDir()
	failed := runCLI("clone", "--source", src, "--target", filepath.Join(small, "disk.img"), "--target-size", "4Mi")
	assert.Equal(t, failed.code, 3, "a source larger than the target is a permanent failure")
	assert.Equal(t, strings.Count(failed.stderr, "\n"), 1, "%q", failed.stderr)
	assert.Assert(t, strings.Contains(failed.stderr, "source has 8388608 bytes, target holds 4194304"), failed.stderr)
	entries, err := os.ReadDir(small)
	assert.NilError(t, err)
	assert.Equal(t, len(entries), 0, "the failed clone left %v", entries)
}

// assertSucceeded checks that the progress file reports a finished job.
func assertSucceeded(t *testing.T, progressFile string) {
	t.Helper()
	var snap progress.Snapshot
	data, err := os.ReadFile(progressFile)
	assert.NilError(t, err)
	assert.NilError(t, json.Unmarshal(data, &snap))
	assert.Equal(t, snap.Phase, "Succeeded")
	assert.Equal(t, snap.Percent, "100.00%")
}

// A server that ends the body by closing the connection (no
// Content-Length, not chunked) cannot show the download is whole: the
// import fails unless --checksum tells.
func TestImportUnframedBodyNeedsChecksum(t *testing.T) {
	raw := filepath.Join(t.TempDir(), "disk.raw")
	testenv.WriteDisk(t, raw, 1<<20, 12)
	image, err := os.ReadFile(raw)
	assert.NilError(t, err)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, buf, err := w.(http.Hijacker).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		_, _ = buf.WriteString("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
		_, _ = buf.Write(image)
		_ = buf.Flush()
	}))
	defer srv.Close()
	vol := t.TempDir()
	target := filepath.Join(vol, "disk.img")
	r := runCLI("import", "--url", srv.URL+"/disk.raw", "--target", target, "--retries", "1")
	assert.Assert(t, r.code != 0)
	assert.Assert(t, strings.Contains(r.stderr, "cannot be known to be complete"), r.stderr)
	r = runCLI("import", "--url", srv.URL+"/disk.raw", "--target", target, "--target-size", "1Mi", "--checksum", testenv.SHA256(t, raw))
	assert.Equal(t, r.code, 0, "stderr: %s", r.stderr)
	testenv.AssertSameDisk(t, target, raw)
}
