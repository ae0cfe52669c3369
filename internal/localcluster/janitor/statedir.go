package janitor

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// StateDirMarker marks a directory as one this tool made, and so may reset:
// start removes everything under it, as root.
const StateDirMarker = ".datavolume-localcluster"

// systemDirs are never a cluster directory.
var systemDirs = map[string]bool{
	"/": true, "/bin": true, "/boot": true, "/dev": true, "/etc": true, "/home": true, "/lib": true, "/lib64": true,
	"/media": true, "/mnt": true, "/opt": true, "/proc": true, "/root": true, "/run": true, "/sbin": true, "/srv": true,
	"/sys": true, "/tmp": true, "/usr": true, "/var": true,
}

// CheckStateDir refuses a --dir that start must not reset: /, the home
// directory or another top-level system directory, a mount point, or an
// existing directory with files this tool did not put there. A new or
// empty directory, or one with the marker (or, from before the marker, the
// layout of a cluster directory: pki, logs and a kubeconfig) is fine.
func CheckStateDir(dir string) error {
	if !filepath.IsAbs(dir) {
		return fmt.Errorf("cluster directory %q is not absolute", dir)
	}
	dir = filepath.Clean(dir)
	if systemDirs[dir] {
		return fmt.Errorf("cluster directory %s is a system directory: it would be reset; choose a directory of its own, e.g. _output/local", dir)
	}
	if home, err := os.UserHomeDir(); err == nil && filepath.Clean(home) == dir {
		return fmt.Errorf("cluster directory %s is the home directory: it would be reset; choose a directory of its own", dir)
	}
	info, err := os.Lstat(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("cluster directory %s: %w", dir, err)
	}
	if !info.IsDir() {
		return fmt.Errorf("cluster directory %s is not a directory", dir)
	}
	parent, err := os.Stat(filepath.Dir(dir))
	if err != nil {
		return fmt.Errorf("cluster directory %s: %w", dir, err)
	}
	if dev(info) != dev(parent) {
		return fmt.Errorf("cluster directory %s is a mount point: it would be reset; choose a directory under it", dir)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("cluster directory %s: %w", dir, err)
	}
	if len(entries) == 0 || exists(filepath.Join(dir, StateDirMarker)) {
		return nil
	}
	if exists(filepath.Join(dir, "pki")) && exists(filepath.Join(dir, "logs")) && exists(filepath.Join(dir, "kubeconfig")) {
		return nil
	}
	return fmt.Errorf("cluster directory %s holds files this tool did not create (no %s in it): start would delete them; choose a new or empty directory", dir, StateDirMarker)
}

// MarkStateDir marks dir as made by this tool.
func MarkStateDir(dir string) error {
	return os.WriteFile(filepath.Join(dir, StateDirMarker), []byte("made by datavolume's local cluster; reset at each start\n"), 0o644)
}

func dev(info os.FileInfo) uint64 {
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Dev) //nolint:unconvert // int32 on some platforms
	}
	return 0
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}
