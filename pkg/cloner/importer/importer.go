// Package importer is the import pipeline: it sniffs a stream's format,
// peels compression layers, and writes a raw disk image to its target
// (converting qcow2 with qemu-img on the way) or extracts a tar archive.
//
// A qcow2 image the source can also read at offsets is first mapped by
// qemu-img (it reads only the tables, through range requests); when its
// data is stored verbatim in guest order, as qemu-img convert writes it,
// the download is streamed straight to the guest offsets, tables skipped.
// Other qcow2 images are converted by qemu-img reading the source over NBD.
// Every read at an offset that covers the header checked on the download
// must return that header (ErrSourceInconsistent otherwise), so a server
// cannot show qemu-img a header naming a backing or external data file.
// The reads the map was made from are also proven against the download as
// it streams (digests compared), the whole of it when a checksum is given:
// the layout used is then that of the checksummed bytes.
//
// The pipeline overlaps its stages in goroutines: reading the source (and
// hashing it when a checksum is given), decompressing, and writing. Raw
// data is never passed through a conversion step. Scratch space is used
// only for qcow2 that cannot be read at random offsets (compressed, from a
// registry or an upload), or that must be converted while a checksum is
// to be verified over the download first.
package importer

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"

	"github.com/go-logr/logr"
	"golang.org/x/sys/unix"

	"github.com/datavolume/datavolume/pkg/cloner/archive"
	"github.com/datavolume/datavolume/pkg/cloner/checksum"
	"github.com/datavolume/datavolume/pkg/cloner/format"
	"github.com/datavolume/datavolume/pkg/cloner/internal/readahead"
	"github.com/datavolume/datavolume/pkg/cloner/progress"
	"github.com/datavolume/datavolume/pkg/cloner/qcow2"
	"github.com/datavolume/datavolume/pkg/cloner/sink"
)

// ContentType is what the volume receives.
type ContentType string

// Content types, as in DataVolume spec.contentType.
const (
	KubeVirt ContentType = "kubevirt" // a disk image
	Archive  ContentType = "archive"  // a tar archive extracted into a filesystem volume
)

// Errors that end an import for good or until it is given scratch space;
// each comes wrapped with the details.
var (
	// ErrUnsupportedFormat: the content is not what the content type and
	// source accept (a tar image for kubevirt content, a disk image for
	// archive content, compression where the source allows none).
	ErrUnsupportedFormat = errors.New("unsupported format")
	// ErrNeedsScratch: this image can only be imported through scratch
	// space and Options.ScratchDir is empty.
	ErrNeedsScratch = errors.New("scratch space needed")
)

// Stream is an image being read from its source.
type Stream interface {
	io.ReadCloser
	// Size is the stream length in bytes, -1 when unknown.
	Size() int64
}

// RandomAccess is a Stream that can also be read at offsets, such as an
// HTTP download from a server that supports Range requests.
type RandomAccess interface {
	ReaderAt() (io.ReaderAt, bool)
}

// Options says what to import where.
type Options struct {
	ContentType ContentType
	// Target is the disk image file or block device for kubevirt content,
	// the directory to extract into for archive content.
	Target string
	// TargetSize is the usable size of the volume; 0 means the image's own
	// size bounded by the filesystem (file) or the device size (block).
	TargetSize int64
	// ScratchDir holds temporary files where the pipeline needs them.
	ScratchDir string
	// Checksum, when set, is verified over the bytes read from the source
	// before the result is committed.
	Checksum *checksum.Expected
	// RawOrQcow2Only refuses compressed images (registry images carry raw
	// or qcow2 disks only, as in CDI).
	RawOrQcow2Only bool
	Progress       *progress.Counter
	Log            logr.Logger
}

const (
	maxLayers   = 3        // compression layers to peel
	sniffBuffer = 64 << 10 // bufio size for peeking at magic bytes
	chunkSize   = 2 << 20  // unit of work between pipeline stages
	chunks      = 4        // chunks in flight per stage

	rangeWindowSize = 4 << 20 // range request size for small reads by qemu-img
	rangeWindows    = 8       // windows kept: as many as qemu-img's reads in flight over NBD
)

// Import reads src to its end and writes it to the target. It closes src.
// On failure nothing that looks like a finished import is left behind.
func Import(ctx context.Context, src Stream, o Options) error {
	defer src.Close()
	if o.Progress == nil {
		o.Progress = &progress.Counter{}
	}
	o.Progress.SetTotal(max(src.Size(), 0))
	p := &pipeline{o: o, src: src}
	var r io.Reader = &progress.Reader{R: src, Counter: o.Progress}
	if o.Checksum != nil {
		p.hash = o.Checksum.NewHash()
		r = io.TeeReader(r, p.hash)
	}
	p.download = readahead.New(r, chunks, chunkSize/2)
	defer p.download.Close()
	return p.run(ctx)
}

type pipeline struct {
	o        Options
	src      Stream
	hash     hash.Hash
	download *readahead.Reader // the source bytes, read ahead and hashed
	layers   []format.Format
	// mapRefused: qemu-img exited with an error mapping the image over
	// the source, though the source read fine.
	mapRefused bool
}

// whyScratch says why a qcow2 image needs scratch space.
func (p *pipeline) whyScratch(ranged bool) string {
	switch {
	case len(p.layers) > 0:
		return "it is " + string(p.layers[len(p.layers)-1]) + "-compressed"
	case ranged:
		return "it must be converted, and the checksum verified first"
	}
	if _, ok := p.src.(RandomAccess); ok {
		return "the server does not support range requests"
	}
	return "the source cannot be read at random offsets"
}

func (p *pipeline) run(ctx context.Context) error {
	br := bufio.NewReaderSize(p.download, sniffBuffer)
	for {
		head, err := br.Peek(format.SniffLen)
		if err != nil && err != io.EOF && err != bufio.ErrBufferFull {
			return fmt.Errorf("reading source: %w", err)
		}
		f := format.Sniff(head)
		p.o.Log.Info("detected format", "format", f, "layer", len(p.layers))
		if f.Compressed() {
			if p.o.RawOrQcow2Only {
				return fmt.Errorf("%w: %s-compressed images are not supported from this source: use raw or qcow2", ErrUnsupportedFormat, f)
			}
			if len(p.layers) == maxLayers {
				return fmt.Errorf("%w: more than %d compression layers", ErrUnsupportedFormat, maxLayers)
			}
			dec, err := format.Decompress(ctx, f, br)
			if err != nil {
				return err
			}
			defer dec.Close()
			p.layers = append(p.layers, f)
			br = bufio.NewReaderSize(dec, sniffBuffer)
			continue
		}
		switch {
		case p.o.ContentType == Archive && f == format.Tar:
			return p.extract(ctx, br)
		case p.o.ContentType == Archive:
			return fmt.Errorf("%w: archive content must be a tar archive, found %s", ErrUnsupportedFormat, f)
		case f == format.Tar:
			return fmt.Errorf("%w: found a tar archive: use content type archive to extract it", ErrUnsupportedFormat)
		case f == format.Qcow2:
			return p.qcow2(ctx, br, head)
		default:
			return p.raw(ctx, br)
		}
	}
}

// finishDownload reads the source to its end and verifies the checksum.
func (p *pipeline) finishDownload() error {
	if _, err := io.Copy(io.Discard, p.download); err != nil {
		return fmt.Errorf("reading source: %w", err)
	}
	if p.hash != nil {
		if err := p.o.Checksum.Verify(p.hash); err != nil {
			return err
		}
		p.o.Log.Info("checksum verified", "algorithm", p.o.Checksum.Algorithm)
	}
	return nil
}

func (p *pipeline) openDisk() (*sink.Disk, error) {
	return sink.Open(sink.Options{Path: p.o.Target, Size: p.o.TargetSize, Log: p.o.Log})
}

func (p *pipeline) raw(ctx context.Context, r io.Reader) error {
	disk, err := p.openDisk()
	if err != nil {
		return err
	}
	defer disk.Abort()
	if size := p.src.Size(); size >= 0 && len(p.layers) == 0 {
		if err := disk.CheckFits(size); err != nil {
			return err
		}
	}
	n, err := pump(ctx, r, disk, p.src)
	if err != nil {
		return err
	}
	if err := p.finishDownload(); err != nil {
		return err
	}
	if err := disk.Commit(n); err != nil {
		return err
	}
	p.o.Log.Info("wrote raw image", "bytes", n, "target", p.o.Target)
	return nil
}

func (p *pipeline) qcow2(ctx context.Context, r io.Reader, head []byte) error {
	hdr, err := qcow2.ParseHeader(head)
	if err != nil {
		return err
	}
	disk, err := p.openDisk()
	if err != nil {
		return err
	}
	defer disk.Abort()
	if err := disk.CheckFits(hdr.VirtualSize); err != nil {
		return err
	}
	ra, ranged := p.rangeReads()
	if ranged {
		// qemu-img reads the image again, at offsets: it must open the
		// header just checked, not whatever a range request returns.
		// (A copy: Peek's bytes are only valid until the next read.)
		ra = &checkedHead{r: ra, head: bytes.Clone(head)}
		// The map is read at offsets too: the stream proves those reads
		// returned its own bytes, so the layout is that of the image
		// downloaded (and checksummed).
		reads := &rangeLog{r: ra}
		plan, ok, err := p.qcow2Plan(ctx, reads, hdr.VirtualSize)
		if err != nil {
			return err
		}
		if ok {
			return p.qcow2Stream(ctx, reads.matcher(r), disk, plan, hdr.VirtualSize)
		}
	}
	if ranged && p.hash == nil {
		// Convert straight from the source: qemu-img reads it over NBD.
		p.src.Close()
		path, zeroed, err := disk.External(hdr.VirtualSize)
		if err != nil {
			return err
		}
		p.o.Log.Info("converting qcow2 from the source", "virtualSize", hdr.VirtualSize)
		// qemu-img reads compressed clusters one by one (~50 KiB each),
		// mostly in file order: windows turn them into few range requests.
		counted := &countingReaderAt{r: ra, c: p.o.Progress}
		windows := readahead.NewWindows(counted, p.src.Size(), rangeWindows, rangeWindowSize)
		err = qcow2.ConvertReaderAt(ctx, p.o.Log, windows, p.src.Size(), qcow2.Target{Path: path, Zeroed: zeroed})
		windows.Close()
		var tool *qcow2.ToolError
		if errors.As(err, &tool) && tool.Refused() && p.mapRefused && ctx.Err() == nil {
			// qemu-img could neither map nor convert it, and every read
			// of the source succeeded: the image itself is bad.
			return fmt.Errorf("%w: %w", qcow2.ErrInvalid, err)
		}
		if err != nil {
			return err
		}
		return disk.Commit(hdr.VirtualSize)
	}
	if p.o.ScratchDir == "" {
		return fmt.Errorf("%w: this qcow2 image must be staged in scratch space (%s): pass --scratch", ErrNeedsScratch, p.whyScratch(ranged))
	}
	scratch, err := os.CreateTemp(p.o.ScratchDir, "image-*.qcow2")
	if err != nil {
		return fmt.Errorf("creating scratch file: %w", err)
	}
	defer os.Remove(scratch.Name())
	defer scratch.Close()
	// A qcow2 file is its data plus metadata; refuse one far larger than
	// its virtual size rather than fill the scratch volume.
	limit := hdr.VirtualSize + hdr.VirtualSize/8 + 64<<20
	p.o.Log.Info("staging qcow2 in scratch space", "path", scratch.Name(), "virtualSize", hdr.VirtualSize)
	n, err := io.CopyBuffer(onlyWriter{scratch}, io.LimitReader(r, limit+1), make([]byte, 1<<20))
	if err != nil {
		return fmt.Errorf("writing scratch file: %w", err)
	}
	if n > limit {
		return fmt.Errorf("%w: the qcow2 file exceeds %d bytes, too large for its virtual size %d (internal snapshots are not imported)", ErrUnsupportedFormat, limit, hdr.VirtualSize)
	}
	if err := p.finishDownload(); err != nil {
		return err
	}
	path, zeroed, err := disk.External(hdr.VirtualSize)
	if err != nil {
		return err
	}
	// Converted whatever its layout, but not if it is truncated.
	if _, err := qcow2.MapFile(ctx, scratch.Name()); err != nil && !errors.Is(err, qcow2.ErrTooFragmented) {
		return err
	}
	if err := qcow2.ConvertFile(ctx, p.o.Log, scratch.Name(), qcow2.Target{Path: path, Zeroed: zeroed}); err != nil {
		return err
	}
	return disk.Commit(hdr.VirtualSize)
}

// qcow2Plan asks qemu-img where the image keeps its data. It reports
// false when the image is to be converted instead: some data is
// compressed or stored out of guest order, or the map failed (the
// conversion that follows then says why, if the image is broken). It fails
// when the map shows data past the end of the image.
func (p *pipeline) qcow2Plan(ctx context.Context, ra io.ReaderAt, virtualSize int64) ([]qcow2.Copy, bool, error) {
	extents, err := qcow2.MapReaderAt(ctx, p.o.Log, ra, p.src.Size())
	var truncated *qcow2.TruncatedError
	if errors.As(err, &truncated) || errors.Is(err, ErrSourceInconsistent) {
		return nil, false, err
	}
	if err != nil {
		var tool *qcow2.ToolError
		p.mapRefused = errors.As(err, &tool) && tool.Refused()
		p.o.Log.Info("cannot stream the qcow2 image, converting it instead", "reason", err.Error())
		return nil, false, nil
	}
	plan, err := qcow2.Sequential(extents, p.src.Size(), virtualSize)
	if errors.Is(err, qcow2.ErrNotSequential) {
		p.o.Log.Info("qcow2 image is compressed or not stored in guest order, converting it with qemu-img")
		return nil, false, nil
	}
	return plan, err == nil, err
}

// qcow2Stream copies the image's data runs from the sequential download
// (r, at offset 0 of the image file) to their guest offsets, skipping the
// tables between them, and stops reading after the last run. r fails when
// the bytes it passes differ from those the plan was mapped from; with a
// checksum it reads, and so checks, the whole file.
func (p *pipeline) qcow2Stream(ctx context.Context, r *matchReader, disk *sink.Disk, plan []qcow2.Copy, virtualSize int64) error {
	var end int64
	if n := len(plan); n > 0 {
		end = plan[n-1].Host + plan[n-1].Length
	}
	if p.hash != nil {
		end = p.src.Size() // the checksum needs every byte
	}
	p.o.Log.Info("streaming qcow2 data runs", "runs", len(plan), "virtualSize", virtualSize, "bytesToRead", end)
	p.o.Progress.SetTotal(end)
	var pos int64 // in the image file
	next := 0     // the plan entry being read
	fill := func(buf []byte) (int, int64, error) {
		for next < len(plan) && pos == plan[next].Host+plan[next].Length {
			next++
		}
		if next == len(plan) {
			return 0, 0, io.EOF
		}
		c := plan[next]
		if skip := c.Host - pos; skip > 0 { // tables between data runs
			if _, err := io.CopyN(io.Discard, r, skip); err != nil {
				return 0, 0, fmt.Errorf("reading source: %w", err)
			}
			pos = c.Host
		}
		n := int(min(c.Host+c.Length-pos, int64(len(buf))))
		if _, err := io.ReadFull(r, buf[:n]); err != nil {
			return 0, 0, fmt.Errorf("reading source: %w", err)
		}
		off := c.Guest + pos - c.Host
		pos += int64(n)
		return n, off, nil
	}
	if _, err := pumpChunks(ctx, fill, disk, p.src); err != nil {
		return err
	}
	if p.hash != nil {
		// The checksum covers the whole file: read the rest, then compare,
		// before anything is committed. Every table the map was read from
		// must be among the bytes checksummed.
		if _, err := io.Copy(io.Discard, r); err != nil {
			return fmt.Errorf("reading source: %w", err)
		}
		if err := r.checkAll(); err != nil {
			return err
		}
		if err := p.finishDownload(); err != nil {
			return err
		}
	} else {
		p.src.Close() // the rest of the file is tables
	}
	if err := disk.Commit(virtualSize); err != nil {
		return err
	}
	p.o.Log.Info("wrote raw image", "bytes", virtualSize, "target", p.o.Target)
	return nil
}

// rangeReads offers reads at offsets of the image itself: the source
// supports them and no compression layer lies in between. A checksum still
// needs the whole sequential download.
func (p *pipeline) rangeReads() (io.ReaderAt, bool) {
	ra, ok := p.src.(RandomAccess)
	if !ok || len(p.layers) > 0 {
		return nil, false
	}
	return ra.ReaderAt()
}

func (p *pipeline) extract(ctx context.Context, r io.Reader) error {
	limit := p.o.TargetSize
	if limit <= 0 {
		var st unix.Statfs_t
		if err := unix.Statfs(p.o.Target, &st); err != nil {
			return fmt.Errorf("checking target filesystem: %w", err)
		}
		limit = int64(st.Blocks) * int64(st.Bsize)
	}
	x, err := archive.Extract(ctx, r, p.o.Target, limit, p.o.Log)
	if err != nil {
		return err
	}
	if err := p.finishDownload(); err != nil {
		x.Abort()
		return err
	}
	if err := x.Commit(); err != nil {
		x.Abort()
		return err
	}
	p.o.Log.Info("extracted archive", "target", p.o.Target)
	return nil
}

type countingReaderAt struct {
	r io.ReaderAt
	c *progress.Counter
}

func (c *countingReaderAt) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.r.ReadAt(p, off)
	c.c.Add(int64(n))
	return n, err
}

type onlyWriter struct{ io.Writer }
