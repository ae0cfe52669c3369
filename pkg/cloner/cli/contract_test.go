package cli_test

import (
	"archive/tar"
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"gotest.tools/v3/assert"

	"github.com/datavolume/datavolume/pkg/cloner/exitcode"
	"github.com/datavolume/datavolume/pkg/cloner/internal/testenv"
)

// terminated runs the CLI with a termination log and returns the run and
// the message it left there, checked against the exit code and stderr.
func terminated(t *testing.T, args ...string) (run, exitcode.Termination) {
	t.Helper()
	logFile := filepath.Join(t.TempDir(), "termination-log")
	r := runCLI(append(args, "--termination-log", logFile)...)
	data, err := os.ReadFile(logFile)
	assert.NilError(t, err, "no termination log; stderr: %s", r.stderr)
	assert.Assert(t, len(data) <= exitcode.MaxMessageBytes)
	assert.Equal(t, bytes.Count(data, []byte("\n")), 1, "one line: %q", data)
	term, err := exitcode.Parse(string(data))
	assert.NilError(t, err)
	assert.Equal(t, term.ExitCode, r.code)
	assert.Equal(t, term.Reason.ExitCode(), r.code, "reason %s", term.Reason)
	if r.code == 0 {
		assert.Equal(t, term.Outcome, exitcode.Succeeded)
		assert.Equal(t, r.stderr, "")
	} else {
		assert.Equal(t, term.Outcome, exitcode.Failed)
		assert.Equal(t, strings.Count(r.stderr, "\n"), 1, "one error line: %q", r.stderr)
		assert.Assert(t, strings.Contains(r.stderr, term.Message), "stderr %q holds the message %q", r.stderr, term.Message)
	}
	return r, term
}

// contractImages makes the images the contract test imports.
func contractImages(t *testing.T) string {
	t.Helper()
	testenv.RequireTools(t, "qemu-img", "gzip")
	dir := t.TempDir()
	raw := filepath.Join(dir, "disk.raw")
	testenv.WriteDisk(t, raw, 4<<20, 5)
	testenv.Shell(t, fmt.Sprintf(`cd %s
		qemu-img convert -q -f raw -O qcow2 disk.raw disk.qcow2
		gzip -k -1 disk.qcow2
		qemu-img create -q -f qcow2 -b disk.qcow2 -F qcow2 backed.qcow2
		qemu-img create -q -f qcow2 big.qcow2 64M`, dir))
	var evil bytes.Buffer
	tw := tar.NewWriter(&evil)
	assert.NilError(t, tw.WriteHeader(&tar.Header{Name: "../escape", Mode: 0o644, Size: 1, Typeflag: tar.TypeReg}))
	_, err := tw.Write([]byte("x"))
	assert.NilError(t, err)
	assert.NilError(t, tw.Close())
	assert.NilError(t, os.WriteFile(filepath.Join(dir, "evil.tar"), evil.Bytes(), 0o644))
	return dir
}

// TestExitCodesAndTerminationMessage runs imports that succeed and fail
// in every way the controller tells apart, and checks the exit code, the
// reason and the message a user reads.
func TestExitCodesAndTerminationMessage(t *testing.T) {
	dir := contractImages(t)
	srv := testenv.FileServer(t, dir, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/broken.img" {
				http.Error(w, "boom", http.StatusInternalServerError)
				return
			}
			next.ServeHTTP(w, r)
		})
	})
	host := strings.TrimPrefix(srv.URL, "https://")
	secrets := t.TempDir()
	user := writeSecret(t, secrets, "user", srv.Username)
	pass := writeSecret(t, secrets, "pass", srv.Password)
	wrong := writeSecret(t, secrets, "wrong", "Wr0ng-Passw0rd")
	auth := []string{"--ca-file", srv.CAFile, "--username-file", user, "--password-file", pass, "--retries", "1"}
	archiveDir := t.TempDir()

	for _, tc := range []struct {
		name        string
		url         string // path on the server, or a whole URL
		args        []string
		target      string // default: a fresh disk.img
		code        int
		reason      exitcode.Reason
		message     []string // substrings of the message
		targetSize  int64
		bytesMoved  bool // bytes must be > 0 (else not checked: read-ahead counts too)
		noAuthFlags bool
	}{
		{name: "raw succeeds", url: "/disk.raw", args: []string{"--target-size", "8Mi"},
			code: 0, reason: exitcode.ReasonCompleted, message: []string{"import completed"}, targetSize: 8 << 20, bytesMoved: true},
		{name: "qcow2 without --target-size reports the image's size", url: "/disk.qcow2",
			code: 0, reason: exitcode.ReasonCompleted, targetSize: 4 << 20, bytesMoved: true},
		{name: "404 names the host and the status, not the query", url: "/missing.img?X-Amz-Signature=qu3ry-Secret",
			code: 1, reason: exitcode.ReasonNotFound, message: []string{"downloading https://" + host + "/missing.img: HTTP 404 Not Found"}},
		{name: "401", url: "/disk.raw", args: []string{"--ca-file", srv.CAFile, "--username-file", user, "--password-file", wrong}, noAuthFlags: true,
			code: 1, reason: exitcode.ReasonUnauthorized, message: []string{host, "HTTP 401 Unauthorized: the credentials were refused"}},
		{name: "500 after retries", url: "/broken.img",
			code: 1, reason: exitcode.ReasonHTTPError, message: []string{host, "HTTP 500 Internal Server Error"}},
		{name: "connection refused", url: "https://127.0.0.1:1/disk.img", args: []string{"--connect-timeout", "1s"},
			code: 1, reason: exitcode.ReasonTransferFailed, message: []string{"127.0.0.1:1", "connection refused"}},
		{name: "checksum mismatch", url: "/disk.raw", args: []string{"--checksum", "md5:00000000000000000000000000000000"},
			code: 3, reason: exitcode.ReasonChecksumMismatch, message: []string{"checksum mismatch: want md5:0000"}, bytesMoved: true},
		{name: "qcow2 larger than the target names both sizes", url: "/big.qcow2", args: []string{"--target-size", "32Mi"},
			code: 3, reason: exitcode.ReasonImageTooLarge, targetSize: 32 << 20,
			message: []string{"the image needs 67108864 bytes (64 MiB), the target holds 33554432 bytes (32 MiB)"}},
		{name: "qcow2 with a backing file", url: "/backed.qcow2",
			code: 3, reason: exitcode.ReasonUnsafeContent, message: []string{"backing file"}},
		{name: "tar escaping the volume", url: "/evil.tar", args: []string{"--content-type", "archive", "--target-size", "1Mi"}, target: archiveDir,
			targetSize: 1 << 20, code: 3, reason: exitcode.ReasonUnsafeContent, message: []string{`tar entry "../escape"`}},
		{name: "raw image for archive content", url: "/disk.raw", args: []string{"--content-type", "archive", "--target-size", "1Mi"}, target: archiveDir,
			targetSize: 1 << 20, code: 3, reason: exitcode.ReasonUnsupportedFormat, message: []string{"archive content must be a tar archive"}},
		{name: "compressed qcow2 without scratch", url: "/disk.qcow2.gz",
			code: 4, reason: exitcode.ReasonNeedsScratch, message: []string{"it is gzip-compressed", "pass --scratch"}},
		{name: "compressed qcow2 with scratch", url: "/disk.qcow2.gz", args: []string{"--scratch", t.TempDir()},
			code: 0, reason: exitcode.ReasonCompleted, bytesMoved: true, targetSize: 4 << 20},
		{name: "bad flag", url: "/disk.raw", args: []string{"--no-such-flag"},
			code: 2, reason: exitcode.ReasonInvalidArguments, message: []string{"unknown flag: --no-such-flag"}},
		{name: "bad extra header", url: "/disk.raw", args: []string{"--extra-header", "X-Token s3cret-Value"},
			code: 2, reason: exitcode.ReasonInvalidArguments, message: []string{`--extra-header #1: not a header line "Name: value"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url := tc.url
			if strings.HasPrefix(url, "/") {
				url = srv.URL + url
			}
			target := tc.target
			if target == "" {
				target = filepath.Join(t.TempDir(), "disk.img")
			}
			args := []string{"import", "--url", url, "--target", target}
			if !tc.noAuthFlags {
				args = append(args, auth...)
			}
			r, term := terminated(t, append(args, tc.args...)...)
			assert.Equal(t, r.code, tc.code, "stderr: %s", r.stderr)
			assert.Equal(t, term.Reason, tc.reason)
			for _, m := range tc.message {
				assert.Assert(t, strings.Contains(term.Message, m), "message %q lacks %q", term.Message, m)
			}
			assert.Equal(t, term.TargetSize, tc.targetSize)
			if tc.bytesMoved {
				assert.Assert(t, term.Bytes > 0, "bytes %d", term.Bytes)
			}
			for _, secret := range []string{srv.Password, "Wr0ng-Passw0rd", "qu3ry-Secret", "s3cret-Value"} {
				for _, out := range []string{r.stdout, r.stderr, term.Message} {
					assert.Assert(t, !strings.Contains(out, secret), "%s leaked:\n%s", secret, out)
				}
			}
		})
	}
}

// TestArchiveIntoBlock is a permanent failure, not a usage error: the
// flags are fine, the volume is the wrong kind.
func TestArchiveIntoBlock(t *testing.T) {
	dev := testenv.BlockDevice(t, 1<<20)
	for _, args := range [][]string{
		{"import", "--url", "http://127.0.0.1:1/a.tar", "--content-type", "archive", "--target", dev},
		{"clone", "--source", t.TempDir(), "--content-type", "archive", "--target", dev},
	} {
		r, term := terminated(t, args...)
		assert.Equal(t, r.code, exitcode.Permanent)
		assert.Equal(t, term.Reason, exitcode.ReasonUnsupportedFormat)
		assert.Equal(t, term.Message, "archive content needs a filesystem volume, not a block device")
	}
}

// TestTerminationLogOnUsageErrors: a termination message is written even
// when the flags do not parse, as long as --termination-log came first.
func TestTerminationLogOnUsageErrors(t *testing.T) {
	logFile := filepath.Join(t.TempDir(), "termination-log")
	r := runCLI("import", "--termination-log", logFile, "--target-size", "lots")
	assert.Equal(t, r.code, 2)
	data, err := os.ReadFile(logFile)
	assert.NilError(t, err)
	term, err := exitcode.Parse(string(data))
	assert.NilError(t, err)
	assert.Equal(t, term.Reason, exitcode.ReasonInvalidArguments)
	assert.Assert(t, strings.Contains(term.Message, "want a quantity such as 10Gi"), term.Message)
}

// TestBlank makes blank disks: a sparse file of exactly the size, grown
// but never cut when one exists, and a block device left as it is.
func TestBlank(t *testing.T) {
	vol := t.TempDir()
	target := filepath.Join(vol, "disk.img")
	progressFile := filepath.Join(t.TempDir(), "progress.json")
	r, term := terminated(t, "blank", "--target", target, "--target-size", "10Gi", "--progress-file", progressFile)
	assert.Equal(t, r.code, 0, r.stderr)
	assert.DeepEqual(t, term, exitcode.Termination{Outcome: exitcode.Succeeded, ExitCode: 0, Reason: exitcode.ReasonCompleted,
		Message: "blank completed", Bytes: 0, TargetSize: 10 << 30})
	assertSucceeded(t, progressFile)
	var st syscall.Stat_t
	assert.NilError(t, syscall.Stat(target, &st))
	assert.Equal(t, st.Size, int64(10<<30))
	assert.Assert(t, st.Blocks == 0, "sparse: %d blocks allocated", st.Blocks)

	// Run again with more: grown; with less: left as it is.
	assert.NilError(t, os.WriteFile(target, []byte("data the VM wrote"), 0o660))
	r, _ = terminated(t, "blank", "--target", target, "--target-size", "1Mi")
	assert.Equal(t, r.code, 0, r.stderr)
	data, err := os.ReadFile(target)
	assert.NilError(t, err)
	assert.Equal(t, len(data), 1<<20)
	assert.Assert(t, strings.HasPrefix(string(data), "data the VM wrote"))
	r, _ = terminated(t, "blank", "--target", target, "--target-size", "4Ki")
	assert.Equal(t, r.code, 0, r.stderr)
	fi, err := os.Stat(target)
	assert.NilError(t, err)
	assert.Equal(t, fi.Size(), int64(1<<20), "never cut")

	dev := testenv.BlockDevice(t, 2<<20)
	before, err := os.ReadFile(dev)
	assert.NilError(t, err)
	r, term = terminated(t, "blank", "--target", dev)
	assert.Equal(t, r.code, 0, r.stderr)
	assert.Equal(t, term.TargetSize, int64(2<<20))
	after, err := os.ReadFile(dev)
	assert.NilError(t, err)
	assert.Assert(t, bytes.Equal(before, after), "the block device is left as it is")

	for _, tc := range []struct {
		args    []string
		wantErr string
	}{
		{[]string{"blank", "--target", target}, "--target-size is required for a disk image file"},
		{[]string{"blank", "--target", vol, "--target-size", "1Gi"}, "is a directory"},
		{[]string{"blank", "--target", "/dev/no-such-device", "--target-size", "1Gi"}, "is not a block device"},
		{[]string{"blank", "--target-size", "1Gi"}, "--target is required"},
	} {
		r, term := terminated(t, tc.args...)
		assert.Equal(t, r.code, 2)
		assert.Assert(t, strings.Contains(term.Message, tc.wantErr), term.Message)
	}
}

// TestImportExtraHeadersAndCADirectory: headers from flags and from a
// Secret mounted whole reach the server on every request; the CA comes
// from a ConfigMap mounted whole under any key; no header value is ever
// printed, even at high verbosity.
func TestImportExtraHeadersAndCADirectory(t *testing.T) {
	dir := contractImages(t)
	srv := testenv.FileServer(t, dir, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("X-Api-Key") != "k3y-From-Secret" || r.Header.Get("X-Plain") != "pl4in-Value" {
				http.Error(w, "missing headers", http.StatusForbidden)
				return
			}
			next.ServeHTTP(w, r)
		})
	})
	ca, err := os.ReadFile(srv.CAFile)
	assert.NilError(t, err)
	caDir := mountLike(t, map[string]string{"my-ca-bundle": string(ca), "other-key": "not a certificate"})
	secrets := t.TempDir()
	user := writeSecret(t, secrets, "user", srv.Username)
	pass := writeSecret(t, secrets, "pass", srv.Password)
	headers := mountLike(t, map[string]string{"api-key": "X-Api-Key: k3y-From-Secret\n"})
	base := []string{"import", "--url", srv.URL + "/disk.qcow2", "--ca-file", caDir,
		"--username-file", user, "--password-file", pass, "--retries", "1", "-v", "5"}

	target := filepath.Join(t.TempDir(), "disk.img")
	r, term := terminated(t, append(base, "--target", target,
		"--secret-extra-headers-dir", headers, "--extra-header", "X-Plain: pl4in-Value")...)
	assert.Equal(t, r.code, 0, r.stderr)
	assert.Equal(t, term.Reason, exitcode.ReasonCompleted)
	testenv.AssertSameDisk(t, target, filepath.Join(dir, "disk.raw"))
	assert.Assert(t, strings.Contains(r.stdout, `"sending extra headers"`), r.stdout)

	r, term = terminated(t, append(base, "--target", filepath.Join(t.TempDir(), "disk.img"), "--extra-header", "X-Plain: pl4in-Value")...)
	assert.Equal(t, r.code, 1)
	assert.Equal(t, term.Reason, exitcode.ReasonUnauthorized)

	bad := mountLike(t, map[string]string{"broken": "X-Api-Key k3y-Without-Colon"})
	r, term = terminated(t, append(base, "--target", filepath.Join(t.TempDir(), "disk.img"), "--secret-extra-headers-dir", bad)...)
	assert.Equal(t, r.code, 2)
	assert.Equal(t, term.Reason, exitcode.ReasonInvalidArguments)
	assert.Assert(t, strings.Contains(term.Message, "broken: not a header line"), term.Message)

	r, _ = terminated(t, "import", "--url", "docker://127.0.0.1:1/x", "--target", filepath.Join(t.TempDir(), "disk.img"), "--extra-header", "X-A: b")
	assert.Equal(t, r.code, 2)
	assert.Assert(t, strings.Contains(r.stderr, "apply to http(s) sources only"), r.stderr)

	for _, secret := range []string{"k3y-From-Secret", "pl4in-Value", "k3y-Without-Colon", srv.Password} {
		assert.Assert(t, !strings.Contains(r.stdout+r.stderr, secret), "%s leaked", secret)
	}
}

// mountLike lays out files as the kubelet mounts a ConfigMap or Secret:
// the data in a timestamped directory, "..data" pointing at it, and each
// key a symlink through "..data".
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
