package clone

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/go-logr/logr"

	"github.com/datavolume/datavolume/pkg/cloner/internal/readahead"
	"github.com/datavolume/datavolume/pkg/cloner/progress"
	"github.com/datavolume/datavolume/pkg/cloner/sink"
)

// SourceOptions configures clone-source.
type SourceOptions struct {
	// Path is a disk image file or block device (kubevirt), or a directory
	// (archive).
	Path string
	Kind Kind
	// Address is the clone target's host:port.
	Address string
	TLS     *tls.Config
	// ConnectTimeout bounds how long to keep trying to reach a target
	// that is not up yet; default two minutes.
	ConnectTimeout time.Duration
	Progress       *progress.Counter
	Log            logr.Logger
}

// Send streams the source to the target and returns once the target has
// confirmed that everything is written, synced and verified.
func Send(ctx context.Context, o SourceOptions) error {
	if o.Progress == nil {
		o.Progress = &progress.Counter{}
	}
	kind, err := o.Kind.wire()
	if err != nil {
		return err
	}
	var body func(w *frameWriter) error
	var size, dataBytes uint64
	switch kind {
	case kindDisk:
		f, err := os.Open(o.Path)
		if err != nil {
			return fmt.Errorf("opening source: %w", err)
		}
		defer f.Close()
		s, ext, err := dataExtents(f)
		if err != nil {
			return err
		}
		size = uint64(s)
		for _, e := range ext {
			dataBytes += uint64(e[1] - e[0])
		}
		body = func(w *frameWriter) error { return sendDisk(ctx, f, ext, w, o.Progress) }
	case kindArchive:
		total, err := treeSize(o.Path)
		if err != nil {
			return err
		}
		size, dataBytes = uint64(total), uint64(total)
		body = func(w *frameWriter) error { return sendArchive(o.Path, w, o.Progress) }
	}
	o.Progress.SetTotal(int64(dataBytes))

	conn, err := dial(ctx, o)
	if err != nil {
		return err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	hdr := header{Kind: kind, Size: size, DataBytes: dataBytes}
	copy(hdr.Magic[:], magic)
	if err := binary.Write(conn, binary.BigEndian, hdr); err != nil {
		return fmt.Errorf("sending header: %w", err)
	}
	if err := readReply(conn); err != nil {
		return err
	}
	o.Log.Info("sending", "path", o.Path, "size", size, "dataBytes", dataBytes, "target", o.Address)
	w := &frameWriter{w: conn, hash: xxhash.New()}
	if err := body(w); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return err
	}
	digest := binary.BigEndian.AppendUint64([]byte{frameEnd}, w.hash.Sum64())
	if _, err := conn.Write(digest); err != nil {
		return fmt.Errorf("sending digest: %w", err)
	}
	if err := readReply(conn); err != nil {
		return err
	}
	o.Log.Info("clone confirmed by target", "bytes", dataBytes)
	return nil
}

// dial connects, retrying while the target is not listening yet.
func dial(ctx context.Context, o SourceOptions) (*tls.Conn, error) {
	timeout := o.ConnectTimeout
	if timeout <= 0 {
		timeout = 2 * time.Minute
	}
	start := time.Now()
	deadline := start.Add(timeout)
	dialer := &net.Dialer{Timeout: 10 * time.Second}
	// Retry fast for a second, since source and target usually start
	// together: a target that listens 25 ms in is reached at once, not
	// after a backoff step of 15 ms. Then back off.
	wait := 2 * time.Millisecond
	for {
		raw, err := dialer.DialContext(ctx, "tcp", o.Address)
		if err == nil {
			conn := tls.Client(newBatchConn(raw), tlsClientConfig(o.TLS, o.Address))
			hctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
			defer cancel()
			if err := conn.HandshakeContext(hctx); err != nil {
				conn.Close()
				return nil, fmt.Errorf("connecting to clone target %s: %w", o.Address, err)
			}
			return conn, nil
		}
		var opErr *net.OpError
		refused := errors.As(err, &opErr) && errors.Is(err, syscall.ECONNREFUSED)
		if !refused || time.Now().After(deadline) || ctx.Err() != nil {
			return nil, fmt.Errorf("connecting to clone target %s: %w", o.Address, err)
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if time.Since(start) > time.Second {
			wait = min(wait*3/2, time.Second)
		}
	}
}

// dataExtents returns the size and the [start, end) ranges that may hold
// data: what SEEK_DATA/SEEK_HOLE report for a file, everything for a
// block device.
func dataExtents(f *os.File) (int64, [][2]int64, error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, nil, err
	}
	if fi.Mode()&os.ModeDevice != 0 {
		size, err := f.Seek(0, io.SeekEnd)
		if err != nil {
			return 0, nil, fmt.Errorf("sizing source device: %w", err)
		}
		return size, [][2]int64{{0, size}}, nil
	}
	if !fi.Mode().IsRegular() {
		return 0, nil, fmt.Errorf("source %s is neither a file nor a block device", f.Name())
	}
	size := fi.Size()
	var ext [][2]int64
	for off := int64(0); off < size; {
		data, err := f.Seek(off, 3) // SEEK_DATA
		if errors.Is(err, syscall.ENXIO) {
			break
		}
		if err != nil {
			return 0, nil, fmt.Errorf("finding data in source: %w", err)
		}
		hole, err := f.Seek(data, 4) // SEEK_HOLE
		if err != nil {
			return 0, nil, fmt.Errorf("finding holes in source: %w", err)
		}
		ext = append(ext, [2]int64{data, hole})
		off = hole
	}
	return size, ext, nil
}

// tlsClientConfig is config with the server name taken from address when
// config names none, as tls.Dial would do.
func tlsClientConfig(config *tls.Config, address string) *tls.Config {
	if config == nil || config.ServerName != "" || config.InsecureSkipVerify {
		return config
	}
	c := config.Clone()
	if host, _, err := net.SplitHostPort(address); err == nil {
		c.ServerName = host
	}
	return c
}

type frameWriter struct {
	w    io.Writer
	hash *xxhash.Digest
	hdr  []byte
}

func (fw *frameWriter) data(p []byte, off int64) error {
	fw.hdr = binary.BigEndian.AppendUint64(append(fw.hdr[:0], frameData), uint64(off))
	fw.hdr = binary.BigEndian.AppendUint32(fw.hdr, uint32(len(p)))
	return fw.send(p)
}

func (fw *frameWriter) archive(p []byte) error {
	fw.hdr = binary.BigEndian.AppendUint32(append(fw.hdr[:0], frameArchive), uint32(len(p)))
	return fw.send(p)
}

func (fw *frameWriter) send(p []byte) error {
	_, _ = fw.hash.Write(fw.hdr[1:])
	_, _ = fw.hash.Write(p)
	if _, err := fw.w.Write(fw.hdr); err != nil {
		return fmt.Errorf("sending: %w", err)
	}
	if _, err := fw.w.Write(p); err != nil {
		return fmt.Errorf("sending: %w", err)
	}
	return nil
}

// sendDisk sends the non-zero blocks of the extents, read ahead in chunks.
func sendDisk(ctx context.Context, f *os.File, ext [][2]int64, w *frameWriter, p *progress.Counter) error {
	return readExtents(ctx, f, ext, chunks, chunkSize, func(buf []byte, off int64) error {
		if err := sendNonZero(buf, off, w); err != nil {
			return err
		}
		p.Add(int64(len(buf)))
		return nil
	})
}

// readExtents reads the extents of f in a goroutine, up to buffers pieces
// ahead, and hands each piece to fn in order; fn must not keep it. Pieces
// are cut at multiples of bufSize, so a piece starts aligned wherever its
// extent does and a target may write it with direct I/O. It stops at the
// first error from reading, from fn or from ctx.
func readExtents(ctx context.Context, f *os.File, ext [][2]int64, buffers, bufSize int, fn func(p []byte, off int64) error) error {
	size := int64(bufSize)
	next := 0     // the extent being read
	var off int64 // where its next piece starts
	fill := func(buf []byte) (int, int64, error) {
		for next < len(ext) && off >= ext[next][1] {
			next++
		}
		if next == len(ext) {
			return 0, 0, io.EOF
		}
		off = max(off, ext[next][0])
		n := min(size-off%size, ext[next][1]-off)
		m, err := f.ReadAt(buf[:n], off)
		if err == io.EOF && int64(m) == n {
			err = nil
		}
		at := off
		off += n
		if err != nil {
			return m, at, fmt.Errorf("reading source at %d: %w", at, err)
		}
		return m, at, nil
	}
	return readahead.Pieces(ctx, buffers, bufSize, fill, fn, nil)
}

var zeroBlock [sink.BlockSize]byte

func sendNonZero(p []byte, off int64, w *frameWriter) error {
	start := -1
	for pos := 0; pos < len(p); {
		n := min(sink.BlockSize-int((off+int64(pos))%sink.BlockSize), len(p)-pos)
		zero := bytes.Equal(p[pos:pos+n], zeroBlock[:n])
		if zero && start >= 0 {
			if err := w.data(p[start:pos], off+int64(start)); err != nil {
				return err
			}
			start = -1
		} else if !zero && start < 0 {
			start = pos
		}
		pos += n
	}
	if start >= 0 {
		return w.data(p[start:], off+int64(start))
	}
	return nil
}

// treeSize sums the regular files under dir.
func treeSize(dir string) (int64, error) {
	var total int64
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			total += fi.Size()
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("reading source directory: %w", err)
	}
	return total, nil
}

// sendArchive streams dir as a tar archive in frames.
func sendArchive(dir string, w *frameWriter, p *progress.Counter) error {
	aw := &archiveFrames{w: w, buf: make([]byte, 0, chunkSize)}
	if err := writeArchive(dir, aw, p); err != nil {
		return err
	}
	return aw.flush()
}

// writeArchive writes dir to w as a tar stream: directories, regular files
// and symlinks (the target applies the same checks as to an import).
func writeArchive(dir string, w io.Writer, p *progress.Counter) error {
	tw := tar.NewWriter(w)
	buf := make([]byte, chunkSize)
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil || rel == "." {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		link := ""
		switch {
		case fi.Mode()&os.ModeSymlink != 0:
			if link, err = os.Readlink(path); err != nil {
				return err
			}
		case fi.Mode().IsRegular(), fi.IsDir():
		default:
			return nil // sockets, devices and FIFOs are not cloned
		}
		hdr, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return err
		}
		hdr.Name = filepath.ToSlash(rel)
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if !fi.Mode().IsRegular() {
			return nil
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		n, err := io.CopyBuffer(tw, onlyReader{f}, buf)
		p.Add(n)
		return err
	})
	if err != nil {
		return fmt.Errorf("archiving source: %w", err)
	}
	return tw.Close()
}

type onlyReader struct{ io.Reader }

// archiveFrames cuts the tar stream into frames.
type archiveFrames struct {
	w   *frameWriter
	buf []byte
}

func (a *archiveFrames) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		c := copy(a.buf[len(a.buf):cap(a.buf)], p)
		a.buf, p = a.buf[:len(a.buf)+c], p[c:]
		if len(a.buf) == cap(a.buf) {
			if err := a.flush(); err != nil {
				return 0, err
			}
		}
	}
	return n, nil
}

func (a *archiveFrames) flush() error {
	if len(a.buf) == 0 {
		return nil
	}
	err := a.w.archive(a.buf)
	a.buf = a.buf[:0]
	return err
}
