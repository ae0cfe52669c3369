// Package archive extracts a tar archive into a filesystem volume without
// letting any entry reach outside it.
//
// Entries are unpacked into a staging directory inside the volume through
// an os.Root, so even a check missed here could not write outside it.
// On top of that, entries are refused, with an error naming them, when
// their path is absolute or contains "..", when they pass through a
// symlink, when a symlink or hard link points outside the volume, and when
// they are device nodes, FIFOs or other special files. Once every entry is
// in place, each symlink is resolved again as the kernel would, through
// the other links (x/y -> .., then z -> x/y/../..), and the archive is
// refused if one leads out of the volume. Regular file data is
// bounded by the volume size. Only Commit moves the staged entries into
// place, so a failed extraction leaves nothing that looks finished.
package archive

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/go-logr/logr"
	"golang.org/x/sys/unix"
)

// StagingName is the directory inside the target that holds an
// extraction until Commit.
const StagingName = ".datavolume-extract"

// ErrTooLarge reports an archive whose files exceed the volume.
var ErrTooLarge = errors.New("archive is larger than the target")

// ErrUnsafeEntry reports an entry refused because it could reach outside
// the volume or is not a plain file, directory or link (device nodes,
// FIFOs, unknown types). The errors returned are *EntryError.
var ErrUnsafeEntry = errors.New("unsafe archive entry")

// EntryError is a refused entry and why.
type EntryError struct {
	Name string // as the archive spells it
	Err  error
}

func (e *EntryError) Error() string { return fmt.Sprintf("tar entry %q: %v", e.Name, e.Err) }

// Is makes errors.Is(err, ErrUnsafeEntry) hold.
func (e *EntryError) Is(target error) bool { return target == ErrUnsafeEntry }

func (e *EntryError) Unwrap() error { return e.Err }

func refuse(name string, err error) error { return &EntryError{Name: name, Err: err} }

// Extraction is an archive unpacked into the staging directory.
type Extraction struct {
	dir     string
	staging string
	log     logr.Logger
}

// Extract unpacks the tar stream r into a staging directory in dir; file
// contents may total at most maxBytes. Call Commit or Abort afterwards.
func Extract(ctx context.Context, r io.Reader, dir string, maxBytes int64, log logr.Logger) (*Extraction, error) {
	x := &Extraction{dir: dir, staging: filepath.Join(dir, StagingName), log: log}
	if err := os.RemoveAll(x.staging); err != nil { // left by a killed job
		return nil, fmt.Errorf("removing old staging directory: %w", err)
	}
	if err := os.Mkdir(x.staging, 0o755); err != nil {
		return nil, fmt.Errorf("creating staging directory: %w", err)
	}
	if err := x.extract(ctx, r, maxBytes); err != nil {
		x.Abort()
		return nil, err
	}
	return x, nil
}

func (x *Extraction) extract(ctx context.Context, r io.Reader, maxBytes int64) error {
	root, err := os.OpenRoot(x.staging)
	if err != nil {
		return err
	}
	defer root.Close()
	tr := tar.NewReader(r)
	buf := make([]byte, 1<<20)
	var total int64
	var links []linkEntry // every symlink made, checked again at the end
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			return checkLinks(ctx, root, links)
		}
		if err != nil {
			return fmt.Errorf("reading tar: %w", err)
		}
		if hdr.Typeflag == tar.TypeXGlobalHeader {
			continue
		}
		name, err := entryName(hdr.Name)
		if err != nil {
			return refuse(hdr.Name, err)
		}
		if name == "." {
			continue
		}
		if err := checkParents(root, name); err != nil {
			return refuse(hdr.Name, err)
		}
		perm := os.FileMode(hdr.Mode) & 0o777 // no setuid, setgid or sticky bits
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := mkdirAll(root, name, perm|0o700); err != nil {
				return err
			}
		case tar.TypeReg, tar.TypeGNUSparse:
			total += hdr.Size
			if total > maxBytes {
				return fmt.Errorf("%w: files exceed %d bytes at %q", ErrTooLarge, maxBytes, hdr.Name)
			}
			if err := writeFile(root, name, perm, tr, buf); err != nil {
				return err
			}
			_ = root.Chtimes(name, hdr.ModTime, hdr.ModTime)
		case tar.TypeSymlink:
			if err := checkSymlink(name, hdr.Linkname); err != nil {
				return refuse(hdr.Name, err)
			}
			if err := prepare(root, name); err != nil {
				return err
			}
			if err := root.Symlink(hdr.Linkname, name); err != nil {
				return fmt.Errorf("creating symlink %q: %w", name, err)
			}
			links = append(links, linkEntry{name: name, archiveName: hdr.Name})
		case tar.TypeLink:
			target, err := entryName(hdr.Linkname)
			if err != nil {
				return refuse(hdr.Name, fmt.Errorf("hard link target %q: %w", hdr.Linkname, err))
			}
			if err := checkParents(root, target); err != nil {
				return refuse(hdr.Name, fmt.Errorf("hard link target: %w", err))
			}
			if fi, err := root.Lstat(target); err != nil || !fi.Mode().IsRegular() {
				return refuse(hdr.Name, fmt.Errorf("hard link target %q is not a file extracted earlier", hdr.Linkname))
			}
			if err := prepare(root, name); err != nil {
				return err
			}
			if err := root.Link(target, name); err != nil {
				return fmt.Errorf("creating hard link %q: %w", name, err)
			}
		case tar.TypeChar, tar.TypeBlock:
			return refuse(hdr.Name, errors.New("device nodes are not allowed"))
		case tar.TypeFifo:
			return refuse(hdr.Name, errors.New("FIFOs are not allowed"))
		default:
			return refuse(hdr.Name, fmt.Errorf("unsupported type %q", hdr.Typeflag))
		}
	}
}

// entryName cleans an entry path and refuses one that could leave the
// volume or collide with the staging directory.
func entryName(name string) (string, error) {
	if name == "" {
		return "", errors.New("empty path")
	}
	if strings.HasPrefix(name, "/") {
		return "", errors.New("absolute paths are not allowed")
	}
	for _, part := range strings.Split(name, "/") {
		if part == ".." {
			return "", errors.New(`paths with ".." are not allowed`)
		}
	}
	clean := path.Clean(name)
	if clean != "." && !filepath.IsLocal(clean) {
		return "", errors.New("path leaves the volume")
	}
	if top, _, _ := strings.Cut(clean, "/"); top == StagingName {
		return "", errors.New("reserved name")
	}
	return clean, nil
}

// checkParents refuses a path whose existing parents include a symlink:
// links are only checked lexically, so nothing may be reached through one.
func checkParents(root *os.Root, name string) error {
	dir := path.Dir(name)
	if dir == "." {
		return nil
	}
	prefix := ""
	for _, part := range strings.Split(dir, "/") {
		prefix = path.Join(prefix, part)
		fi, err := root.Lstat(prefix)
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if fi.Mode()&os.ModeSymlink != 0 {
			return fmt.Errorf("path goes through symlink %q", prefix)
		}
	}
	return nil
}

// checkSymlink refuses a symlink whose target is absolute or resolves,
// relative to the link, outside the volume.
func checkSymlink(name, target string) error {
	if target == "" {
		return errors.New("empty symlink target")
	}
	if path.IsAbs(target) {
		return fmt.Errorf("symlink to absolute path %q points out of the volume", target)
	}
	resolved := path.Join(path.Dir(name), target)
	if resolved != "." && !filepath.IsLocal(resolved) {
		return fmt.Errorf("symlink to %q points out of the volume", target)
	}
	return nil
}

type linkEntry struct {
	name        string // cleaned, relative to the root
	archiveName string // as the archive spells it, for errors
}

// maxLinkHops is how many symlinks one resolution may follow, as Linux's
// path walk allows (beyond it, ELOOP).
const maxLinkHops = 40

// checkLinks resolves every symlink of the finished tree as the kernel
// would, link after link, and refuses one that leads out of the root: a
// link's target is checked lexically when it is made, but a link made
// earlier or later can turn "x/y/../.." into a path above the root.
func checkLinks(ctx context.Context, root *os.Root, links []linkEntry) error {
	for _, l := range links {
		if err := ctx.Err(); err != nil {
			return err
		}
		fi, err := root.Lstat(l.name)
		if err != nil || fi.Mode()&os.ModeSymlink == 0 {
			continue // replaced by a later entry
		}
		target, err := root.Readlink(l.name)
		if err != nil {
			return fmt.Errorf("reading symlink %q: %w", l.name, err)
		}
		if err := resolveInside(root, path.Dir(l.name), target); err != nil {
			return refuse(l.archiveName, fmt.Errorf("symlink to %q %w", target, err))
		}
	}
	return nil
}

// resolveInside walks target from the directory dir (both relative to the
// root) as the kernel resolves a path: a component naming a symlink is
// replaced by the link's target, ".." climbs one directory. It fails when
// the walk climbs above the root, meets an absolute link, or follows more
// than maxLinkHops links. Past a component that does not exist, or is not
// a directory, the rest is walked lexically (the kernel would stop there).
func resolveInside(root *os.Root, dir, target string) error {
	var at []string // the directories walked into, below the root
	if dir != "." {
		at = strings.Split(dir, "/")
	}
	todo := strings.Split(target, "/")
	hops := 0
	lexical := false
	for len(todo) > 0 {
		c := todo[0]
		todo = todo[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(at) == 0 {
				return errors.New("resolves out of the volume")
			}
			at = at[:len(at)-1]
			continue
		}
		if lexical {
			at = append(at, c)
			continue
		}
		p := path.Join(append(slices.Clone(at), c)...)
		fi, err := root.Lstat(p)
		switch {
		case err != nil || (!fi.IsDir() && fi.Mode()&os.ModeSymlink == 0):
			lexical = true
			at = append(at, c)
		case fi.Mode()&os.ModeSymlink != 0:
			hops++
			if hops > maxLinkHops {
				return errors.New("resolves through too many levels of symbolic links")
			}
			next, err := root.Readlink(p)
			if err != nil {
				return fmt.Errorf("reading symlink %q: %w", p, err)
			}
			if path.IsAbs(next) {
				return fmt.Errorf("resolves through %q to the absolute path %q", p, next)
			}
			todo = append(strings.Split(next, "/"), todo...)
		default:
			at = append(at, c)
		}
	}
	return nil
}

func mkdirAll(root *os.Root, name string, perm os.FileMode) error {
	if err := root.MkdirAll(name, perm); err != nil {
		return fmt.Errorf("creating directory %q: %w", name, err)
	}
	if err := root.Chmod(name, perm); err != nil {
		return fmt.Errorf("setting mode of %q: %w", name, err)
	}
	return nil
}

// prepare creates the parents of name and removes what a later entry of
// the same name replaces.
func prepare(root *os.Root, name string) error {
	if dir := path.Dir(name); dir != "." {
		if err := root.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("creating directory %q: %w", dir, err)
		}
	}
	if err := root.Remove(name); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("replacing %q: %w", name, err)
	}
	return nil
}

func writeFile(root *os.Root, name string, perm os.FileMode, r io.Reader, buf []byte) error {
	if err := prepare(root, name); err != nil {
		return err
	}
	f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return fmt.Errorf("creating %q: %w", name, err)
	}
	if _, err := io.CopyBuffer(onlyWriter{f}, r, buf); err != nil {
		f.Close()
		return fmt.Errorf("extracting %q: %w", name, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("extracting %q: %w", name, err)
	}
	return nil
}

type onlyWriter struct{ io.Writer }

// Commit syncs the extracted data and moves every staged entry into the
// volume, replacing entries of the same name.
func (x *Extraction) Commit() error {
	if err := syncFS(x.staging); err != nil {
		return err
	}
	entries, err := os.ReadDir(x.staging)
	if err != nil {
		return fmt.Errorf("listing staged files: %w", err)
	}
	for _, e := range entries {
		dst := filepath.Join(x.dir, e.Name())
		if err := os.RemoveAll(dst); err != nil {
			return fmt.Errorf("replacing %s: %w", dst, err)
		}
		if err := os.Rename(filepath.Join(x.staging, e.Name()), dst); err != nil {
			return fmt.Errorf("moving %s into place: %w", e.Name(), err)
		}
	}
	if err := os.Remove(x.staging); err != nil {
		return fmt.Errorf("removing staging directory: %w", err)
	}
	return syncFS(x.dir)
}

// Abort removes everything extracted.
func (x *Extraction) Abort() {
	if err := os.RemoveAll(x.staging); err != nil {
		x.log.Error(err, "removing staging directory", "path", x.staging)
	}
}

func syncFS(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("syncing %s: %w", dir, err)
	}
	defer f.Close()
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		return fmt.Errorf("syncing %s: %w", dir, err)
	}
	return nil
}
