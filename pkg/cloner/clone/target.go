package clone

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/go-logr/logr"
	"golang.org/x/sys/unix"

	"github.com/datavolume/datavolume/pkg/cloner/archive"
	"github.com/datavolume/datavolume/pkg/cloner/internal/iobuf"
	"github.com/datavolume/datavolume/pkg/cloner/progress"
	"github.com/datavolume/datavolume/pkg/cloner/sink"
)

// TargetOptions configures clone-target.
type TargetOptions struct {
	// Path is the disk image file or block device (kubevirt), or the
	// directory to fill (archive).
	Path string
	Kind Kind
	// Size is the usable size of the volume (--target-size), 0 for the
	// image's own size (file) or the device size.
	Size     int64
	TLS      *tls.Config
	Progress *progress.Counter
	Log      logr.Logger
}

const handshakeTimeout = 30 * time.Second

// Receive accepts connections on l until one clone has been received,
// and returns its outcome. Connections that fail the TLS handshake (no or
// an untrusted client certificate) are logged and do not end the wait.
func Receive(ctx context.Context, l net.Listener, o TargetOptions) error {
	if o.Progress == nil {
		o.Progress = &progress.Counter{}
	}
	kind, err := o.Kind.wire()
	if err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	for {
		raw, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("accepting clone source: %w", err)
		}
		conn := tls.Server(newBatchConn(raw), o.TLS)
		hctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
		err = conn.HandshakeContext(hctx)
		cancel()
		if err != nil {
			o.Log.Info("rejected connection", "remote", raw.RemoteAddr().String(), "error", err.Error())
			raw.Close()
			continue
		}
		err = serve(ctx, conn, kind, o)
		conn.Close()
		return err
	}
}

func serve(ctx context.Context, conn *tls.Conn, kind byte, o TargetOptions) (err error) {
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	r := bufio.NewReaderSize(conn, 256<<10)
	var hdr header
	if err := binary.Read(r, binary.BigEndian, &hdr); err != nil {
		return fmt.Errorf("reading clone header: %w", err)
	}
	if string(hdr.Magic[:]) != magic {
		return errors.New("not a clone source: bad magic")
	}
	// Every failure from here on is reported to the source too.
	defer func() {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		if werr := writeReply(conn, err); werr != nil && err == nil {
			err = fmt.Errorf("confirming to the source: %w", werr)
		}
	}()
	if hdr.Kind != kind {
		return fmt.Errorf("source sends %q content, target expects %q", hdr.Kind, kind)
	}
	o.Progress.SetTotal(int64(hdr.DataBytes))
	o.Log.Info("receiving", "path", o.Path, "size", hdr.Size, "dataBytes", hdr.DataBytes)
	if kind == kindArchive {
		return receiveArchive(ctx, r, conn, hdr, o)
	}
	return receiveDisk(r, conn, hdr, o)
}

// The target writes in units of writeSize, gathered from consecutive
// frames: with direct I/O one write is in flight at a time, and on the
// disks measured 8 MiB writes move twice as much per second as 1 MiB ones.
// A unit ends early where the data does (a sparse or half-full disk), so
// writeBuffers keeps enough of them queued for the network to run ahead
// of the disk: 8 rather than 3 took a 2 GiB dense clone over mTLS from
// 2.68 s to 2.27 s and a 512 MiB half-full one from 0.45 s to 0.40 s
// (means of interleaved runs).
const (
	writeSize    = 8 << 20
	writeBuffers = 8
)

// flushEvery is how often, in bytes written, the target asks for a
// background flush. Data arrives over TLS slower than the disk takes it,
// so the disk has time to flush between writes, and the less is left
// unflushed the shorter Commit's fsync. 16 MiB rather than the sink's
// 64 MiB took the median of the sparse clone (100 MiB of data) over mTLS
// from 246 to 209 ms and from 245 to 225 ms in two sets of 10 interleaved
// runs, and of the half-full one from 505 to 459 ms and from 467 to
// 433 ms (8 runs each); a dense 2 GiB one was unchanged. The one-pod
// clone keeps 64 MiB: its disk is the bottleneck, and 16 MiB slowed its
// half-full case by a tenth.
const flushEvery = 16 << 20

type dataChunk struct {
	buf []byte
	off int64
}

func receiveDisk(r *bufio.Reader, conn io.Writer, hdr header, o TargetOptions) error {
	disk, err := sink.Open(sink.Options{Path: o.Path, Size: o.Size, FlushEvery: flushEvery, Log: o.Log})
	if err != nil {
		return err
	}
	defer disk.Abort()
	if hdr.Size > uint64(disk.Capacity()) {
		return fmt.Errorf("%w: source has %d bytes, target holds %d", sink.ErrTooLarge, hdr.Size, disk.Capacity())
	}
	if err := writeReply(conn, nil); err != nil {
		return err
	}
	// Writes happen in their own goroutine while the next frames are
	// decrypted and hashed.
	free := make(chan []byte, writeBuffers)
	full := make(chan dataChunk, writeBuffers)
	bufs := iobuf.GetN(writeBuffers, writeSize)
	for _, b := range bufs {
		free <- b
	}
	written := make(chan error, 1)
	go func() {
		var err error
		for c := range full {
			if err == nil {
				err = disk.WriteAt(c.buf, c.off)
				o.Progress.Add(int64(len(c.buf)))
			}
			free <- c.buf[:cap(c.buf)]
		}
		written <- err
	}()
	readErr := readDiskFrames(r, hdr, free, full)
	close(full)
	err = <-written
	iobuf.PutAll(bufs) // both goroutines are done with them
	if err != nil {
		return err
	}
	if readErr != nil {
		return readErr
	}
	if err := disk.Commit(int64(hdr.Size)); err != nil {
		return err
	}
	o.Log.Info("clone received", "path", o.Path, "bytes", hdr.DataBytes)
	return nil
}

// readDiskFrames gathers consecutive frames into buffers of writeSize and
// hands each to the writer when it is full or the next frame does not
// follow on. After a failure the partial buffer is dropped: nothing more
// needs writing to a target that will be aborted.
func readDiskFrames(r *bufio.Reader, hdr header, free chan []byte, full chan dataChunk) error {
	h := xxhash.New()
	var fh [13]byte
	var cur dataChunk
	send := func() {
		if len(cur.buf) > 0 {
			full <- cur
		} else if cur.buf != nil {
			free <- cur.buf
		}
		cur = dataChunk{}
	}
	for {
		typ, err := r.ReadByte()
		if err != nil {
			return fmt.Errorf("reading clone stream: %w", err)
		}
		switch typ {
		case frameData:
			if _, err := io.ReadFull(r, fh[1:13]); err != nil {
				return fmt.Errorf("reading clone stream: %w", err)
			}
			off := int64(binary.BigEndian.Uint64(fh[1:]))
			n := int(binary.BigEndian.Uint32(fh[9:]))
			if n > chunkSize || off < 0 || uint64(off)+uint64(n) > hdr.Size {
				return fmt.Errorf("bad data frame: %d bytes at %d", n, off)
			}
			if cur.buf != nil && (off != cur.off+int64(len(cur.buf)) || len(cur.buf)+n > cap(cur.buf)) {
				send()
			}
			if cur.buf == nil {
				cur = dataChunk{buf: (<-free)[:0], off: off}
			}
			at := len(cur.buf)
			cur.buf = cur.buf[:at+n]
			if _, err := io.ReadFull(r, cur.buf[at:]); err != nil {
				return fmt.Errorf("reading clone stream: %w", err)
			}
			_, _ = h.Write(fh[1:13])
			_, _ = h.Write(cur.buf[at:])
		case frameEnd:
			send()
			return checkDigest(r, h)
		default:
			return fmt.Errorf("unexpected frame %q in a disk clone", typ)
		}
	}
}

func checkDigest(r io.Reader, h *xxhash.Digest) error {
	var sent uint64
	if err := binary.Read(r, binary.BigEndian, &sent); err != nil {
		return fmt.Errorf("reading digest: %w", err)
	}
	if got := h.Sum64(); got != sent {
		return fmt.Errorf("checksum mismatch: source sent digest %016x, target received %016x", sent, got)
	}
	return nil
}

// archiveLimit is how many bytes of files fit the target directory: the
// usable size given, else the size of its filesystem.
func archiveLimit(dir string, size int64) (int64, error) {
	if size > 0 {
		return size, nil
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("checking target filesystem: %w", err)
	}
	return int64(st.Blocks) * int64(st.Bsize), nil
}

func receiveArchive(ctx context.Context, r *bufio.Reader, conn io.Writer, hdr header, o TargetOptions) error {
	limit, err := archiveLimit(o.Path, o.Size)
	if err != nil {
		return err
	}
	if hdr.Size > uint64(limit) {
		return fmt.Errorf("%w: source has %d bytes, target holds %d", archive.ErrTooLarge, hdr.Size, limit)
	}
	if err := writeReply(conn, nil); err != nil {
		return err
	}
	pr, pw := io.Pipe()
	type result struct {
		x   *archive.Extraction
		err error
	}
	extracted := make(chan result, 1)
	go func() {
		x, err := archive.Extract(ctx, pr, o.Path, limit, o.Log)
		pr.CloseWithError(err) // unblock the frame reader if extraction stopped early
		extracted <- result{x, err}
	}()
	readErr := readArchiveFrames(r, pw, o.Progress)
	pw.CloseWithError(readErr)
	res := <-extracted
	if readErr != nil {
		if res.x != nil {
			res.x.Abort()
		}
		return readErr
	}
	if res.err != nil {
		return res.err
	}
	if err := res.x.Commit(); err != nil {
		res.x.Abort()
		return err
	}
	o.Log.Info("clone received", "path", o.Path, "bytes", hdr.DataBytes)
	return nil
}

func readArchiveFrames(r *bufio.Reader, w io.Writer, p *progress.Counter) error {
	h := xxhash.New()
	buf := make([]byte, chunkSize)
	var fh [4]byte
	for {
		typ, err := r.ReadByte()
		if err != nil {
			return fmt.Errorf("reading clone stream: %w", err)
		}
		switch typ {
		case frameArchive:
			if _, err := io.ReadFull(r, fh[:]); err != nil {
				return fmt.Errorf("reading clone stream: %w", err)
			}
			n := int(binary.BigEndian.Uint32(fh[:]))
			if n > chunkSize {
				return fmt.Errorf("bad archive frame of %d bytes", n)
			}
			if _, err := io.ReadFull(r, buf[:n]); err != nil {
				return fmt.Errorf("reading clone stream: %w", err)
			}
			_, _ = h.Write(fh[:])
			_, _ = h.Write(buf[:n])
			if _, err := w.Write(buf[:n]); err != nil {
				return fmt.Errorf("extracting: %w", err)
			}
			p.Add(int64(n))
		case frameEnd:
			return checkDigest(r, h)
		default:
			return fmt.Errorf("unexpected frame %q in an archive clone", typ)
		}
	}
}
