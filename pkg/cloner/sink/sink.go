// Package sink writes a raw disk image into its volume: a disk.img file in a
// filesystem volume, or a block device.
//
// A file is written under a temporary name next to the target and renamed
// into place only by Commit, so a killed job never leaves a file that looks
// finished; zero blocks are skipped and become holes. On a block device,
// zero ranges are zeroed with BLKZEROOUT so that old data never shows
// through, and the first MiB (where partition tables and boot sectors live)
// is zeroed at open and written only by Commit, so an interrupted import
// does not look like a bootable disk either.
package sink

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"unsafe"

	"github.com/go-logr/logr"
	"golang.org/x/sys/unix"
)

const (
	// BlockSize is the granularity of zero detection.
	BlockSize = 4096
	// headSize is how much of a block device is held back until Commit.
	headSize = 1 << 20
)

// ErrTooLarge reports an image that does not fit its target. The errors
// returned are *TooLargeError.
var ErrTooLarge = errors.New("image is larger than the target")

// TooLargeError is ErrTooLarge with the sizes, for a message a user can
// act on.
type TooLargeError struct {
	// ImageSize is the image's (virtual) size; 0 when it is only known to
	// exceed the target, as for a compressed stream of unknown length.
	ImageSize  int64
	TargetSize int64
}

func (e *TooLargeError) Error() string {
	if e.ImageSize <= 0 {
		return fmt.Sprintf("%v: its data continues past the target's %s", ErrTooLarge, Size(e.TargetSize))
	}
	return fmt.Sprintf("%v: the image needs %s, the target holds %s", ErrTooLarge, Size(e.ImageSize), Size(e.TargetSize))
}

// Unwrap makes errors.Is(err, ErrTooLarge) hold.
func (e *TooLargeError) Unwrap() error { return ErrTooLarge }

// Size writes a byte count for people: "1073741824 bytes (1 GiB)".
func Size(n int64) string {
	if n < 1024 {
		return fmt.Sprintf("%d bytes", n)
	}
	v, unit := float64(n)/1024, "KiB"
	for _, u := range []string{"MiB", "GiB", "TiB", "PiB", "EiB"} {
		if v < 1024 {
			break
		}
		v, unit = v/1024, u
	}
	return fmt.Sprintf("%d bytes (%s %s)", n, strconv.FormatFloat(math.Round(v*100)/100, 'f', -1, 64), unit)
}

// Options says where and how large.
type Options struct {
	// Path is the disk image file to create or the block device to fill.
	Path string
	// Size is the virtual size the volume offers (--target-size). For a
	// file it is also the final file size; 0 means the image's own size,
	// bounded by the filesystem size. For a block device it further bounds
	// the device size.
	Size int64
	// FlushEvery is how much written data asks for a background flush
	// (0: 64 MiB). Each flush shortens the fsync Commit waits for, and
	// costs disk time: a writer faster than its disk loses throughput to
	// frequent flushes, one fed by a slower network does not.
	FlushEvery int64
	Log        logr.Logger
}

// Disk is an open target. Writes must come at increasing offsets.
type Disk struct {
	opts     Options
	f        *os.File
	direct   *os.File // the same target opened O_DIRECT, nil if unsupported
	tmpPath  string   // files only
	block    bool
	devSize  int64 // block only
	capacity int64
	pos      int64 // end of the last WriteAt
	next     int64 // below it everything is written or zeroed
	head     []byte
	external bool // an external tool (qemu-img) wrote the data
	flush    *flusher
	done     bool
}

// Open prepares the target for writing.
func Open(opts Options) (*Disk, error) {
	fi, err := os.Stat(opts.Path)
	if err == nil && fi.Mode()&os.ModeDevice != 0 && fi.Mode()&os.ModeCharDevice == 0 {
		return openBlock(opts)
	}
	if err == nil && !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("target %s is neither a regular file nor a block device", opts.Path)
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("checking target: %w", err)
	}
	return openFile(opts)
}

func openFile(opts Options) (*Disk, error) {
	dir := filepath.Dir(opts.Path)
	capacity := opts.Size
	if capacity <= 0 {
		var st unix.Statfs_t
		if err := unix.Statfs(dir, &st); err != nil {
			return nil, fmt.Errorf("checking filesystem of %s: %w", dir, err)
		}
		capacity = int64(st.Blocks) * int64(st.Bsize)
	}
	tmp := filepath.Join(dir, "."+filepath.Base(opts.Path)+".partial")
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o660)
	if err != nil {
		return nil, fmt.Errorf("creating %s: %w", tmp, err)
	}
	d := &Disk{opts: opts, f: f, tmpPath: tmp, capacity: capacity, flush: startFlusher(f, opts.FlushEvery)}
	d.openDirect(tmp)
	return d, nil
}

// openDirect opens a second descriptor with O_DIRECT for aligned data
// writes: they skip the page-cache copy and the writeback that fsync
// would wait for, which on the VMs measured cuts the kernel time of a
// write by four. Filesystems without O_DIRECT (tmpfs) keep buffered I/O.
func (d *Disk) openDirect(path string) {
	f, err := os.OpenFile(path, os.O_WRONLY|unix.O_DIRECT, 0)
	if err != nil {
		d.opts.Log.V(1).Info("direct I/O unavailable, using buffered writes", "error", err.Error())
		return
	}
	d.direct = f
}

func openBlock(opts Options) (*Disk, error) {
	// O_EXCL on a block device fails if it is mounted or otherwise claimed.
	f, err := os.OpenFile(opts.Path, os.O_RDWR|os.O_EXCL, 0)
	if err != nil {
		return nil, fmt.Errorf("opening block device: %w", err)
	}
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("sizing block device: %w", err)
	}
	capacity := size
	if opts.Size > 0 && opts.Size < size {
		capacity = opts.Size
	}
	d := &Disk{opts: opts, f: f, block: true, devSize: size, capacity: capacity, flush: startFlusher(f, opts.FlushEvery)}
	d.openDirect(opts.Path)
	d.head = make([]byte, min(headSize, size))
	if err := d.zeroOut(0, int64(len(d.head))); err != nil {
		_ = d.flush.stop()
		f.Close()
		return nil, err
	}
	return d, nil
}

// Capacity is the largest image the target accepts.
func (d *Disk) Capacity() int64 { return d.capacity }

// IsBlock tells whether the target is a block device.
func (d *Disk) IsBlock() bool { return d.block }

// CheckFits refuses an image of the given virtual size before any write.
func (d *Disk) CheckFits(size int64) error {
	if size > d.capacity {
		return &TooLargeError{ImageSize: size, TargetSize: d.capacity}
	}
	return nil
}

// WriteAt writes p at off, skipping zero blocks. off must not be below the
// end of the previous write.
func (d *Disk) WriteAt(p []byte, off int64) error {
	if off < d.pos {
		return fmt.Errorf("write at %d goes back before %d", off, d.pos)
	}
	end := off + int64(len(p))
	if end > d.capacity {
		return &TooLargeError{TargetSize: d.capacity}
	}
	d.pos = end
	// Walk the buffer in aligned blocks, writing runs of non-zero blocks;
	// zero blocks are left to fillGap, which zeroes whole gaps at once.
	runStart, pos := -1, 0
	for pos < len(p) {
		n := BlockSize - int((off+int64(pos))%BlockSize)
		n = min(n, len(p)-pos)
		zero := isZero(p[pos : pos+n])
		if zero && runStart >= 0 {
			if err := d.writeRun(p[runStart:pos], off+int64(runStart)); err != nil {
				return err
			}
			runStart = -1
		} else if !zero && runStart < 0 {
			runStart = pos
		}
		pos += n
	}
	if runStart >= 0 {
		return d.writeRun(p[runStart:], off+int64(runStart))
	}
	return nil
}

var zeroBlock [BlockSize]byte

func isZero(b []byte) bool { return bytes.Equal(b, zeroBlock[:len(b)]) }

func (d *Disk) writeRun(p []byte, off int64) error {
	if err := d.fillZero(d.next, off); err != nil {
		return err
	}
	if err := d.writeData(p, off); err != nil {
		return err
	}
	d.flush.wrote(int64(len(p)))
	d.next = off + int64(len(p))
	return nil
}

// fillZero zeroes [from, to) on block devices; files keep a hole there.
// The held-back head is zero already.
func (d *Disk) fillZero(from, to int64) error {
	if !d.block {
		return nil
	}
	from = max(from, int64(len(d.head)))
	if from >= to {
		return nil
	}
	if err := d.zeroOut(from, to-from); err != nil {
		return err
	}
	d.flush.wrote(to - from)
	return nil
}

func (d *Disk) writeData(p []byte, off int64) error {
	if h := int64(len(d.head)); off < h {
		n := copy(d.head[off:], p)
		p, off = p[n:], off+int64(n)
		if len(p) == 0 {
			return nil
		}
	}
	if d.direct != nil && aligned(p, off) {
		_, err := d.direct.WriteAt(p, off)
		if err == nil {
			return nil
		}
		if !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("writing target: %w", err)
		}
		d.opts.Log.V(1).Info("direct I/O refused, using buffered writes", "error", err.Error())
		d.direct.Close()
		d.direct = nil
	}
	if _, err := d.f.WriteAt(p, off); err != nil {
		return fmt.Errorf("writing target: %w", err)
	}
	return nil
}

// directAlign is what O_DIRECT needs of buffer address, offset and length
// on every device in use (logical blocks of 512 or 4096 bytes).
const directAlign = 4096

func aligned(p []byte, off int64) bool {
	return len(p) > 0 && off%directAlign == 0 && len(p)%directAlign == 0 &&
		uintptr(unsafe.Pointer(&p[0]))%directAlign == 0
}

func (d *Disk) closeDirect() {
	if d.direct != nil {
		d.direct.Close()
		d.direct = nil
	}
}

// zeroOut zeroes a block device range; the kernel writes zeros itself if
// the device cannot zero faster, so the range always reads back as zeros.
func (d *Disk) zeroOut(off, n int64) error {
	// BLKZEROOUT wants 512-byte alignment; write the odd edges by hand.
	alignedStart := (off + 511) &^ 511
	alignedEnd := (off + n) &^ 511
	if alignedStart >= alignedEnd {
		return d.writeZeros(off, n)
	}
	if err := d.writeZeros(off, alignedStart-off); err != nil {
		return err
	}
	rng := [2]uint64{uint64(alignedStart), uint64(alignedEnd - alignedStart)}
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, d.f.Fd(), unix.BLKZEROOUT, uintptr(unsafe.Pointer(&rng))); errno != 0 {
		return fmt.Errorf("zeroing %d bytes at %d: %w", rng[1], rng[0], errno)
	}
	return d.writeZeros(alignedEnd, off+n-alignedEnd)
}

func (d *Disk) writeZeros(off, n int64) error {
	for n > 0 {
		c := min(n, BlockSize)
		if _, err := d.f.WriteAt(zeroBlock[:c], off); err != nil {
			return fmt.Errorf("zeroing target: %w", err)
		}
		off, n = off+c, n-c
	}
	return nil
}

// External hands the target to a tool that writes virtualSize bytes of raw
// data itself (qemu-img convert -n). It returns the path to write and
// whether that path already reads as zeros (then --target-is-zero holds).
func (d *Disk) External(virtualSize int64) (path string, zeroed bool, err error) {
	if err := d.CheckFits(virtualSize); err != nil {
		return "", false, err
	}
	d.external = true
	d.closeDirect()
	d.pos, d.next = virtualSize, virtualSize
	if d.block {
		return d.opts.Path, false, nil
	}
	if err := d.f.Truncate(d.finalFileSize(virtualSize)); err != nil {
		return "", false, fmt.Errorf("sizing target: %w", err)
	}
	return d.tmpPath, true, nil
}

func (d *Disk) finalFileSize(imageSize int64) int64 {
	if d.opts.Size > 0 {
		return d.opts.Size
	}
	return imageSize
}

// Commit finishes an image of imageSize bytes: the rest of the target is
// zeroed (block) or left as a hole (file), data is synced, and a file is
// renamed into place.
func (d *Disk) Commit(imageSize int64) error {
	if err := d.CheckFits(imageSize); err != nil {
		return err
	}
	if imageSize < d.pos {
		return fmt.Errorf("image size %d is below the %d bytes written", imageSize, d.pos)
	}
	if d.block {
		if err := d.fillZero(d.next, d.devSize); err != nil {
			return err
		}
		if !d.external {
			if _, err := d.f.WriteAt(d.head, 0); err != nil {
				return fmt.Errorf("writing target: %w", err)
			}
		}
	} else if !d.external {
		if err := d.f.Truncate(d.finalFileSize(imageSize)); err != nil {
			return fmt.Errorf("sizing target: %w", err)
		}
	}
	d.closeDirect()
	if err := d.flush.stop(); err != nil {
		return err
	}
	if err := d.f.Sync(); err != nil {
		return fmt.Errorf("syncing target: %w", err)
	}
	if err := d.f.Close(); err != nil {
		return fmt.Errorf("closing target: %w", err)
	}
	d.done = true
	if d.block {
		return nil
	}
	if err := os.Rename(d.tmpPath, d.opts.Path); err != nil {
		return fmt.Errorf("renaming into place: %w", err)
	}
	return syncDir(filepath.Dir(d.opts.Path))
}

// Abort undoes what it can: a file's temporary is removed, a block
// device's head is zeroed. Safe to call after Commit (then it does nothing).
func (d *Disk) Abort() {
	if d.done {
		return
	}
	d.done = true
	d.closeDirect()
	_ = d.flush.stop() // what it flushed is being undone
	if d.block {
		if err := d.zeroOut(0, int64(len(d.head))); err != nil {
			d.opts.Log.Error(err, "zeroing the head of an unfinished block target")
		}
		_ = d.f.Sync()
		d.f.Close()
		return
	}
	d.f.Close()
	if err := os.Remove(d.tmpPath); err != nil && !errors.Is(err, os.ErrNotExist) {
		d.opts.Log.Error(err, "removing unfinished target", "path", d.tmpPath)
	}
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("syncing %s: %w", dir, err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %w", dir, err)
	}
	return nil
}
