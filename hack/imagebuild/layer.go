package main

import (
	"archive/tar"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

// epoch is every entry's time, so the same files make the same layer.
var epoch = time.Unix(0, 0).UTC()

// fileEntry is one file placed into an image.
type fileEntry struct {
	Source string      // file on this machine
	Target string      // absolute path in the image
	Mode   fs.FileMode // permission bits
}

// inlineEntry is a small file whose content is given.
type inlineEntry struct {
	Target  string
	Mode    fs.FileMode
	Content string
}

// layerSpec is the content of one layer: files, inline files and empty
// directories (with their mode), owned by root.
type layerSpec struct {
	Files  []fileEntry
	Inline []inlineEntry
	Dirs   map[string]fs.FileMode
}

// writeLayer writes spec as an uncompressed tar with sorted entries, parent
// directories made explicit, root ownership and the epoch as every time.
func writeLayer(w io.Writer, spec layerSpec) error {
	type entry struct {
		hdr    tar.Header
		source string
		data   string
	}
	entries := map[string]*entry{}
	addDirs := func(p string) {
		for dir := path.Dir(p); dir != "/" && dir != "."; dir = path.Dir(dir) {
			name := strings.TrimPrefix(dir, "/") + "/"
			if _, ok := entries[name]; !ok {
				entries[name] = &entry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755}}
			}
		}
	}
	for dir, mode := range spec.Dirs {
		name := strings.TrimPrefix(path.Clean(dir), "/") + "/"
		addDirs(path.Clean(dir))
		entries[name] = &entry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: int64(modeBits(mode))}}
	}
	for _, f := range spec.Files {
		info, err := os.Stat(f.Source)
		if err != nil {
			return fmt.Errorf("adding %s: %w", f.Source, err)
		}
		if !info.Mode().IsRegular() {
			return fmt.Errorf("adding %s: not a regular file", f.Source)
		}
		addDirs(f.Target)
		name := strings.TrimPrefix(path.Clean(f.Target), "/")
		entries[name] = &entry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: int64(modeBits(f.Mode)), Size: info.Size()}, source: f.Source}
	}
	for _, f := range spec.Inline {
		addDirs(f.Target)
		name := strings.TrimPrefix(path.Clean(f.Target), "/")
		entries[name] = &entry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: int64(modeBits(f.Mode)), Size: int64(len(f.Content))}, data: f.Content}
	}
	names := make([]string, 0, len(entries))
	for name := range entries {
		names = append(names, name)
	}
	sort.Strings(names)
	tw := tar.NewWriter(w)
	for _, name := range names {
		e := entries[name]
		e.hdr.ModTime, e.hdr.Format = epoch, tar.FormatPAX
		if err := tw.WriteHeader(&e.hdr); err != nil {
			return fmt.Errorf("writing %s: %w", name, err)
		}
		switch {
		case e.source != "":
			if err := copyFile(tw, e.source, e.hdr.Size); err != nil {
				return err
			}
		case e.data != "":
			if _, err := io.WriteString(tw, e.data); err != nil {
				return fmt.Errorf("writing %s: %w", name, err)
			}
		}
	}
	return tw.Close()
}

// modeBits keeps permission, setuid/setgid and sticky bits in tar's form.
func modeBits(m fs.FileMode) fs.FileMode {
	bits := m.Perm()
	if m&fs.ModeSetuid != 0 {
		bits |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		bits |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		bits |= 0o1000
	}
	return bits
}

func copyFile(w io.Writer, src string, size int64) error {
	f, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("copying %s: %w", src, err)
	}
	defer f.Close()
	n, err := io.Copy(w, f)
	if err != nil {
		return fmt.Errorf("copying %s: %w", src, err)
	}
	if n != size {
		return fmt.Errorf("copying %s: it changed size while being packed", src)
	}
	return nil
}

// skipInRootfs says what a packed root filesystem leaves out: the kernel's
// and the runtime's mounts are made at run time, apt's caches only take
// room, and logs and ldconfig's aux-cache (inode numbers and times) differ
// from one debootstrap to the next.
func skipInRootfs(rel string) bool {
	if rel == "var/cache/ldconfig/aux-cache" {
		return true
	}
	for _, dir := range []string{"proc/", "sys/", "dev/", "run/", "tmp/", "var/cache/apt/archives/", "var/lib/apt/lists/", "var/log/"} {
		if strings.HasPrefix(rel, dir) && rel != dir {
			return true
		}
	}
	return false
}

// writeRootfsLayer packs the directory root as a layer: sorted entries,
// modes and owners as on disk, symlinks, hard links as links to their first
// name, the epoch as every time, and no device nodes, sockets or fifos.
func writeRootfsLayer(w io.Writer, root string) error {
	var rels []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil || rel == "." {
			return err
		}
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			rel += "/"
		}
		if skipInRootfs(rel) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		rels = append(rels, rel)
		return nil
	})
	if err != nil {
		return fmt.Errorf("walking %s: %w", root, err)
	}
	sort.Strings(rels)
	tw := tar.NewWriter(w)
	links := map[[2]uint64]string{} // (device, inode) → first name
	for _, rel := range rels {
		p := filepath.Join(root, strings.TrimSuffix(rel, "/"))
		info, err := os.Lstat(p)
		if err != nil {
			return fmt.Errorf("packing %s: %w", p, err)
		}
		st, ok := info.Sys().(*syscall.Stat_t)
		if !ok {
			return fmt.Errorf("%s: no owner information", p)
		}
		hdr := tar.Header{Name: rel, Mode: int64(modeBits(info.Mode())), Uid: int(st.Uid), Gid: int(st.Gid), ModTime: epoch, Format: tar.FormatPAX}
		switch mode := info.Mode(); {
		case mode.IsDir():
			hdr.Typeflag = tar.TypeDir
		case mode&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return fmt.Errorf("packing %s: %w", p, err)
			}
			hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, target
		case mode.IsRegular():
			key := [2]uint64{uint64(st.Dev), st.Ino}
			if first, seen := links[key]; seen && st.Nlink > 1 {
				hdr.Typeflag, hdr.Linkname = tar.TypeLink, first
				break
			}
			links[key] = rel
			hdr.Typeflag, hdr.Size = tar.TypeReg, info.Size()
		default:
			continue // device nodes, sockets and fifos come from the runtime
		}
		if err := tw.WriteHeader(&hdr); err != nil {
			return fmt.Errorf("packing %s: %w", p, err)
		}
		if hdr.Typeflag == tar.TypeReg {
			if err := copyFile(tw, p, hdr.Size); err != nil {
				return err
			}
		}
	}
	return tw.Close()
}
