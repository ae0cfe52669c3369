package cli_test

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"gotest.tools/v3/assert"

	"github.com/datavolume/datavolume/pkg/cloner/exitcode"
	"github.com/datavolume/datavolume/pkg/cloner/internal/testenv"
)

// qemuUID is the user the cloner runs as in its pods: CDI's qemu user, so
// that a VM (running as the same user) can use the disk.
const qemuUID = 107

// TestUnprivileged runs the commands as uid/gid 107 from a directory it
// cannot write, with HOME pointing nowhere and TMPDIR its own: each must
// succeed writing only what package cli documents (the target, --scratch,
// $TMPDIR, the progress and termination files) and leave nothing in the
// world-writable places (/tmp, /var/tmp, /dev/shm) it could otherwise
// reach. Together these stand in for the pod's read-only root filesystem.
func TestUnprivileged(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test switches to uid 107 and needs root, as make test runs")
	}
	testenv.RequireTools(t, "qemu-img", "gzip", "tar", "losetup")
	base, err := os.MkdirTemp("", "cloner-unprivileged-")
	assert.NilError(t, err)
	t.Cleanup(func() { os.RemoveAll(base) })
	assert.NilError(t, os.Chmod(base, 0o755))
	bin := filepath.Join(base, "datavolume-cloner")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/datavolume/datavolume/cmd/datavolume-cloner").CombinedOutput()
	assert.NilError(t, err, "%s", out)

	images := mkdir(t, base, "images", 0)
	raw := filepath.Join(images, "disk.raw")
	testenv.WriteDisk(t, raw, 8<<20, 29)
	testenv.Shell(t, fmt.Sprintf(`cd %s
		qemu-img convert -q -c -f raw -O qcow2 disk.raw compressed.qcow2
		qemu-img convert -q -f raw -O qcow2 disk.raw disk.qcow2 && gzip -k -1 disk.qcow2 && gzip -k -1 disk.raw
		mkdir tree && echo hello > tree/file.txt && tar -C tree -cf archive.tar . && chmod -R a+rX .`, images))
	srv := testenv.FileServer(t, images, nil)
	secrets := mkdir(t, base, "secrets", 0)
	for name, value := range map[string]string{"user": srv.Username, "pass": srv.Password, "ca.crt": ""} {
		if name == "ca.crt" {
			ca, err := os.ReadFile(srv.CAFile)
			assert.NilError(t, err)
			value = string(ca)
		}
		assert.NilError(t, os.WriteFile(filepath.Join(secrets, name), []byte(value), 0o644))
	}
	auth := []string{"--ca-file", filepath.Join(secrets, "ca.crt"),
		"--username-file", filepath.Join(secrets, "user"), "--password-file", filepath.Join(secrets, "pass")}

	dev := testenv.BlockDevice(t, 16<<20)
	// containerd's device_ownership_from_security_context gives the pod's
	// user the device; do the same, and give it back.
	assert.NilError(t, os.Chown(dev, qemuUID, qemuUID))
	t.Cleanup(func() { _ = os.Chown(dev, 0, 6) })

	for _, tc := range []struct {
		name    string
		args    func(vol, scratch string) []string
		target  string // in vol unless absolute
		compare string // image the target must equal
		logs    string // the path taken, as logged
	}{
		{name: "import qcow2 converted over NBD", target: "disk.img", compare: raw, logs: "converting qcow2 from the source",
			args: func(vol, _ string) []string { return []string{"import", "--url", srv.URL + "/compressed.qcow2"} }},
		{name: "import compressed qcow2 through scratch", target: "disk.img", compare: raw, logs: "staging qcow2 in scratch space",
			args: func(vol, scratch string) []string {
				return []string{"import", "--url", srv.URL + "/disk.qcow2.gz", "--scratch", scratch}
			}},
		{name: "import raw.gz", target: "disk.img", compare: raw,
			args: func(vol, _ string) []string {
				return []string{"import", "--url", srv.URL + "/disk.raw.gz", "--target-size", "16Mi"}
			}},
		{name: "import into a block device", target: dev, compare: raw,
			args: func(vol, _ string) []string { return []string{"import", "--url", srv.URL + "/disk.raw.gz"} }},
		{name: "import archive", target: ".",
			args: func(vol, _ string) []string {
				return []string{"import", "--url", srv.URL + "/archive.tar", "--content-type", "archive"}
			}},
		{name: "blank", target: "disk.img",
			args: func(vol, _ string) []string { return []string{"blank", "--target-size", "1Gi"} }},
		{name: "blank block device", target: dev,
			args: func(vol, _ string) []string { return []string{"blank"} }},
		{name: "clone", target: "disk.img", compare: raw,
			args: func(vol, _ string) []string { return []string{"clone", "--source", raw} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			run := mkdir(t, base, strings.ReplaceAll(tc.name, " ", "-"), 0)
			vol := mkdir(t, run, "vol", qemuUID)
			scratch := mkdir(t, run, "scratch", qemuUID)
			tmp := mkdir(t, run, "tmp", qemuUID)
			status := mkdir(t, run, "status", qemuUID) // the kubelet's termination-log and our progress file
			target := tc.target
			if !filepath.IsAbs(target) {
				target = filepath.Join(vol, target)
			}
			args := append(tc.args(vol, scratch), "--target", target,
				"--progress-file", filepath.Join(status, "progress.json"), "--termination-log", filepath.Join(status, "termination-log"))
			if args[0] == "import" {
				args = append(args, auth...)
			}
			since := time.Now()
			stdout, stderr, code := runAs(t, bin, tmp, args...)
			assert.Equal(t, code, 0, "stderr: %s\nstdout: %s", stderr, stdout)
			assert.Assert(t, strings.Contains(stdout, tc.logs), "%q not logged:\n%s", tc.logs, stdout)

			data, err := os.ReadFile(filepath.Join(status, "termination-log"))
			assert.NilError(t, err)
			term, err := exitcode.Parse(string(data))
			assert.NilError(t, err)
			assert.Equal(t, term.Outcome, exitcode.Succeeded)
			if tc.compare != "" {
				testenv.AssertSameDisk(t, target, tc.compare)
			}
			assert.DeepEqual(t, dirNames(t, scratch), []string(nil))
			assert.DeepEqual(t, dirNames(t, tmp), []string(nil))
			switch {
			case tc.target == ".":
				assert.DeepEqual(t, dirNames(t, vol), []string{"file.txt"})
			case filepath.IsAbs(tc.target):
				assert.DeepEqual(t, dirNames(t, vol), []string(nil))
			default:
				assert.DeepEqual(t, dirNames(t, vol), []string{tc.target})
			}
			assert.DeepEqual(t, dirNames(t, status), []string{"progress.json", "termination-log"})
			assertNothingOwnedElsewhere(t, since, base)
		})
	}

	// $TMPDIR is where the NBD socket goes: one the user cannot write
	// fails the conversion that needs it, and says so.
	t.Run("TMPDIR not writable", func(t *testing.T) {
		run := mkdir(t, base, "no-tmpdir", 0)
		vol := mkdir(t, run, "vol", qemuUID)
		readOnly := mkdir(t, run, "tmp", 0)
		_, stderr, code := runAs(t, bin, readOnly, append([]string{"import", "--url", srv.URL + "/compressed.qcow2",
			"--target", filepath.Join(vol, "disk.img"), "--termination-log", ""}, auth...)...)
		assert.Equal(t, code, exitcode.Retryable)
		assert.Assert(t, strings.Contains(stderr, "creating nbd socket dir: open "+readOnly) ||
			strings.Contains(stderr, "creating nbd socket dir: mkdir "+readOnly), stderr)
		assert.DeepEqual(t, dirNames(t, vol), []string(nil))
	})
}

// runAs runs the binary as uid/gid 107 in "/", with a minimal environment.
func runAs(t *testing.T, bin, tmpdir string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "HOME=/nonexistent", "TMPDIR=" + tmpdir}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: qemuUID, Gid: qemuUID, Groups: []uint32{}}}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if exit, ok := err.(*exec.ExitError); ok {
		return stdout.String(), stderr.String(), exit.ExitCode()
	}
	assert.NilError(t, err)
	return stdout.String(), stderr.String(), 0
}

// mkdir makes a directory owned by uid (0: root, only readable by others).
func mkdir(t *testing.T, parent, name string, uid int) string {
	t.Helper()
	dir := filepath.Join(parent, name)
	assert.NilError(t, os.Mkdir(dir, 0o755))
	if uid != 0 {
		assert.NilError(t, os.Chown(dir, uid, uid))
	}
	return dir
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	assert.NilError(t, err)
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

// localClusterMarker is the file internal/localcluster puts in a state directory.
const localClusterMarker = ".datavolume-localcluster"

// assertNothingOwnedElsewhere looks for anything uid 107 made since the
// run started in the places anyone may write, outside the test's own tree.
func assertNothingOwnedElsewhere(t *testing.T, since time.Time, base string) {
	t.Helper()
	for _, root := range []string{"/tmp", "/var/tmp", "/dev/shm"} {
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil || p == base {
				return fs.SkipDir
			}
			// A local cluster's state directory (a clone's _output/e2e under
			// /tmp, say): its pods run as uid 107 too, and write there.
			if d.IsDir() {
				if _, err := os.Stat(filepath.Join(p, localClusterMarker)); err == nil {
					return fs.SkipDir
				}
			}
			fi, err := d.Info()
			if err != nil {
				return nil
			}
			if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid == qemuUID && !fi.ModTime().Before(since.Add(-time.Second)) {
				t.Errorf("the unprivileged run wrote %s", p)
			}
			return nil
		})
		if err != nil && !os.IsNotExist(err) {
			t.Errorf("walking %s: %v", root, err)
		}
	}
}
