package clone

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"

	"github.com/go-logr/logr"

	"github.com/datavolume/datavolume/pkg/cloner/archive"
	"github.com/datavolume/datavolume/pkg/cloner/progress"
	"github.com/datavolume/datavolume/pkg/cloner/sink"
)

// LocalOptions configures a clone inside one pod that mounts both volumes.
type LocalOptions struct {
	// Source is a disk image file or block device (kubevirt), or a
	// directory (archive).
	Source string
	// Target is the disk image file or block device (kubevirt), or the
	// directory to fill (archive).
	Target string
	Kind   Kind
	// Size is the usable size of the target volume, as TargetOptions.Size.
	Size     int64
	Progress *progress.Counter
	Log      logr.Logger
}

// Copy clones Source into Target without a network: no TLS and no wire
// digest, as no bytes leave the process. The target is written as by
// Receive: sparse, and only made to look finished once synced.
func Copy(ctx context.Context, o LocalOptions) error {
	if o.Progress == nil {
		o.Progress = &progress.Counter{}
	}
	kind, err := o.Kind.wire()
	if err != nil {
		return err
	}
	if kind == kindArchive {
		err = copyArchive(ctx, o)
	} else {
		err = copyDisk(ctx, o)
	}
	if err != nil && ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// localBuffers is how many writeSize pieces a one-pod clone reads ahead.
const localBuffers = 3

func copyDisk(ctx context.Context, o LocalOptions) error {
	src, err := os.Open(o.Source)
	if err != nil {
		return fmt.Errorf("opening source: %w", err)
	}
	defer src.Close()
	// Before sink.Open, which truncates a file and zeroes a device's head.
	if err := checkSeparateDisks(src, o.Target); err != nil {
		return err
	}
	size, ext, err := dataExtents(src)
	if err != nil {
		return err
	}
	var dataBytes int64
	for _, e := range ext {
		dataBytes += e[1] - e[0]
	}
	disk, err := sink.Open(sink.Options{Path: o.Target, Size: o.Size, Log: o.Log})
	if err != nil {
		return err
	}
	defer disk.Abort()
	if size > disk.Capacity() {
		return fmt.Errorf("%w: source has %d bytes, target holds %d", sink.ErrTooLarge, size, disk.Capacity())
	}
	o.Progress.SetTotal(dataBytes)
	o.Log.Info("copying", "source", o.Source, "target", o.Target, "size", size, "dataBytes", dataBytes)
	// Buffers as large as the ones Receive writes, for the same reason
	// (see writeSize); the sink skips zero blocks itself. Fewer of them:
	// here the disk, not a network, sets the pace, and more buffers only
	// cost their first touch.
	err = readExtents(ctx, src, ext, localBuffers, writeSize, func(p []byte, off int64) error {
		if err := disk.WriteAt(p, off); err != nil {
			return err
		}
		o.Progress.Add(int64(len(p)))
		return nil
	})
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err // a cancelled job must not finish the target after all
	}
	if err := disk.Commit(size); err != nil {
		return err
	}
	o.Log.Info("clone copied", "target", o.Target, "bytes", dataBytes)
	return nil
}

// checkSeparateDisks refuses a target that is the source: it would be
// destroyed while being read. Two nodes of one block device count as the
// same, as when a pod is given one claim twice.
func checkSeparateDisks(src *os.File, target string) error {
	si, err := src.Stat()
	if err != nil {
		return fmt.Errorf("checking source: %w", err)
	}
	ti, err := os.Stat(target)
	if errors.Is(err, os.ErrNotExist) {
		return nil // a new image file
	}
	if err != nil {
		return fmt.Errorf("checking target: %w", err)
	}
	if os.SameFile(si, ti) {
		return fmt.Errorf("source %s and target %s are the same file", src.Name(), target)
	}
	if sameDevice(si, ti) {
		return fmt.Errorf("source %s and target %s are the same device", src.Name(), target)
	}
	return nil
}

func sameDevice(a, b os.FileInfo) bool {
	if a.Mode()&os.ModeDevice == 0 || a.Mode().Type() != b.Mode().Type() {
		return false
	}
	as, aok := a.Sys().(*syscall.Stat_t)
	bs, bok := b.Sys().(*syscall.Stat_t)
	return aok && bok && as.Rdev == bs.Rdev
}

func copyArchive(ctx context.Context, o LocalOptions) error {
	if err := checkSeparateTrees(o.Source, o.Target); err != nil {
		return err
	}
	total, err := treeSize(o.Source)
	if err != nil {
		return err
	}
	limit, err := archiveLimit(o.Target, o.Size)
	if err != nil {
		return err
	}
	if total > limit {
		return fmt.Errorf("%w: source has %d bytes, target holds %d", archive.ErrTooLarge, total, limit)
	}
	o.Progress.SetTotal(total)
	o.Log.Info("copying", "source", o.Source, "target", o.Target, "dataBytes", total)
	pr, pw := io.Pipe()
	// Extract looks at ctx between entries only; closing the pipe also
	// stops a cancelled copy in the middle of a large file.
	stop := context.AfterFunc(ctx, func() { pr.CloseWithError(ctx.Err()) })
	defer stop()
	written := make(chan error, 1)
	go func() {
		err := writeArchive(o.Source, pw, o.Progress)
		pw.CloseWithError(err)
		written <- err
	}()
	x, err := archive.Extract(ctx, pr, o.Target, limit, o.Log)
	pr.CloseWithError(err) // unblock the writer if extraction stopped early
	writeErr := <-written
	if err != nil {
		if writeErr != nil && !errors.Is(writeErr, err) {
			return writeErr // the source failed first; Extract only saw it end
		}
		return err
	}
	if writeErr != nil {
		x.Abort()
		return writeErr
	}
	if err := x.Commit(); err != nil {
		x.Abort()
		return err
	}
	o.Log.Info("clone copied", "target", o.Target, "bytes", total)
	return nil
}

// checkSeparateTrees refuses directories that are the same or nested: the
// copy would read its own output, or the extraction replace its source.
func checkSeparateTrees(source, target string) error {
	si, err := os.Stat(source)
	if err != nil {
		return fmt.Errorf("checking source: %w", err)
	}
	ti, err := os.Stat(target)
	if err != nil {
		return fmt.Errorf("checking target: %w", err)
	}
	if os.SameFile(si, ti) {
		return fmt.Errorf("source %s and target %s are the same directory", source, target)
	}
	in, err := inside(target, si)
	if err != nil {
		return err
	}
	if in {
		return fmt.Errorf("target %s is inside source %s", target, source)
	}
	if in, err = inside(source, ti); err != nil {
		return err
	}
	if in {
		return fmt.Errorf("source %s is inside target %s", source, target)
	}
	return nil
}

// inside reports whether dir lies below the directory d, comparing each
// parent of its real path with d by identity, so a second mount of d is
// recognised too.
func inside(dir string, d os.FileInfo) (bool, error) {
	p, err := filepath.EvalSymlinks(dir)
	if err == nil {
		p, err = filepath.Abs(p)
	}
	if err != nil {
		return false, fmt.Errorf("resolving %s: %w", dir, err)
	}
	for parent := filepath.Dir(p); parent != p; p, parent = parent, filepath.Dir(parent) {
		fi, err := os.Stat(parent)
		if err != nil {
			return false, fmt.Errorf("checking %s: %w", parent, err)
		}
		if os.SameFile(fi, d) {
			return true, nil
		}
	}
	return false, nil
}
