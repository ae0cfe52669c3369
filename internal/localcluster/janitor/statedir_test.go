package janitor

import (
	"os"
	"path/filepath"
	"testing"

	"gotest.tools/v3/assert"
)

// start resets its directory as root: only one it made, or a new or empty
// one, may be it.
func TestCheckStateDir(t *testing.T) {
	tmp := t.TempDir()
	mkdir := func(name string, files ...string) string {
		dir := filepath.Join(tmp, name)
		assert.NilError(t, os.MkdirAll(dir, 0o755))
		for _, f := range files {
			assert.NilError(t, os.MkdirAll(filepath.Dir(filepath.Join(dir, f)), 0o755))
			assert.NilError(t, os.WriteFile(filepath.Join(dir, f), nil, 0o644))
		}
		return dir
	}
	ours := mkdir("ours", "pki/ca.crt")
	assert.NilError(t, MarkStateDir(ours))
	home, err := os.UserHomeDir()
	assert.NilError(t, err)

	for _, ok := range []string{
		filepath.Join(tmp, "new"),
		mkdir("empty"),
		ours,
		mkdir("before-the-marker", "pki/ca.crt", "logs/etcd.log", "kubeconfig"),
	} {
		assert.Check(t, CheckStateDir(ok), ok)
	}
	for dir, want := range map[string]string{
		"/":                               "cluster directory / is a system directory",
		"/usr":                            "cluster directory /usr is a system directory",
		"/var/../etc":                     "cluster directory /etc is a system directory",
		home:                              "cluster directory " + home + " is ",
		"relative/dir":                    `cluster directory "relative/dir" is not absolute`,
		mkdir("photos", "holiday.jpg"):    "holds files this tool did not create (no .datavolume-localcluster in it)",
		filepath.Join(ours, "pki/ca.crt"): "is not a directory",
	} {
		assert.ErrorContains(t, CheckStateDir(dir), want, dir)
	}
	// A mount point: /dev/shm is a tmpfs of its own on Linux.
	if info, err := os.Stat("/dev/shm"); err == nil && info.IsDir() {
		assert.ErrorContains(t, CheckStateDir("/dev/shm"), "is a mount point")
	}
}
