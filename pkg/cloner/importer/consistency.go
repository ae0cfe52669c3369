package importer

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"slices"
	"sync"
)

// ErrSourceInconsistent: the source answered a read at an offset (an HTTP
// range request) with bytes other than those its download delivered. The
// image qemu-img would read is then not the image that was checked (a
// header naming a host file as external data file), nor the one the
// checksum covers (altered tables). The import fails.
var ErrSourceInconsistent = errors.New("the source's range answers differ from its download")

// checkedHead serves reads at offsets of a source whose first bytes, head,
// were read from the download and checked: a read overlapping them must
// return exactly them, so that every qemu-img run opens the header that
// qcow2.ParseHeader accepted (no backing file, no external data file).
type checkedHead struct {
	r    io.ReaderAt
	head []byte
}

func (c *checkedHead) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.r.ReadAt(p, off)
	if off < int64(len(c.head)) && n > 0 {
		end := min(off+int64(n), int64(len(c.head)))
		if !bytes.Equal(p[:end-off], c.head[off:end]) {
			return 0, fmt.Errorf("%w: the image header (bytes %d-%d) read at an offset is not the one checked", ErrSourceInconsistent, off, end-1)
		}
	}
	return n, err
}

// maxRangeReads bounds how many reads a rangeLog records (a digest and two
// offsets each): far more than qemu-img reads to map an image's tables.
const maxRangeReads = 1 << 16

var errTooManyRangeReads = errors.New("too many reads at offsets to check against the download")

// rangeLog records a SHA-256 of every read at an offset, so that the
// download can later prove those reads returned its own bytes: a qcow2
// map derived from them is then the map of the downloaded (and
// checksummed) image.
type rangeLog struct {
	r io.ReaderAt

	mu    sync.Mutex
	reads []rangeRead
}

type rangeRead struct {
	off, end int64
	sum      [sha256.Size]byte
}

func (l *rangeLog) ReadAt(p []byte, off int64) (int, error) {
	n, err := l.r.ReadAt(p, off)
	if n == 0 {
		return n, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.reads) == maxRangeReads {
		return 0, errTooManyRangeReads
	}
	l.reads = append(l.reads, rangeRead{off: off, end: off + int64(n), sum: sha256.Sum256(p[:n])})
	return n, err
}

// matcher returns a reader of r, the download from its first byte, that
// fails with ErrSourceInconsistent as soon as the bytes it passes differ
// from a read the log recorded.
func (l *rangeLog) matcher(r io.Reader) *matchReader {
	l.mu.Lock()
	reads := slices.Clone(l.reads)
	l.mu.Unlock()
	slices.SortFunc(reads, func(a, b rangeRead) int {
		switch {
		case a.off < b.off:
			return -1
		case a.off > b.off:
			return 1
		}
		return 0
	})
	return &matchReader{r: r, pending: reads}
}

// matchReader hashes the download where recorded reads lie and compares.
type matchReader struct {
	r       io.Reader
	pos     int64
	pending []rangeRead // sorted by off; not yet reached
	active  []*activeRead
	err     error
}

type activeRead struct {
	rangeRead
	h hash.Hash
}

func (m *matchReader) Read(p []byte) (int, error) {
	if m.err != nil {
		return 0, m.err
	}
	n, err := m.r.Read(p)
	if n > 0 {
		if merr := m.feed(p[:n]); merr != nil {
			m.err = merr
			return 0, merr
		}
	}
	return n, err
}

// feed hashes b, the download at m.pos, into every recorded read it
// overlaps and checks those it completes.
func (m *matchReader) feed(b []byte) error {
	start, end := m.pos, m.pos+int64(len(b))
	m.pos = end
	for len(m.pending) > 0 && m.pending[0].off < end {
		m.active = append(m.active, &activeRead{rangeRead: m.pending[0], h: sha256.New()})
		m.pending = m.pending[1:]
	}
	kept := m.active[:0]
	for _, a := range m.active {
		from, to := max(a.off, start), min(a.end, end)
		a.h.Write(b[from-start : to-start])
		if a.end > end {
			kept = append(kept, a)
			continue
		}
		if !bytes.Equal(a.h.Sum(nil), a.sum[:]) {
			return fmt.Errorf("%w: bytes %d-%d", ErrSourceInconsistent, a.off, a.end-1)
		}
	}
	clear(m.active[len(kept):])
	m.active = kept
	return nil
}

// checkAll reports recorded reads the download did not reach: with the
// whole download read, they lie past its end.
func (m *matchReader) checkAll() error {
	if m.err != nil {
		return m.err
	}
	if len(m.active) > 0 || len(m.pending) > 0 {
		return fmt.Errorf("%w: bytes read at offsets lie past the %d bytes downloaded", ErrSourceInconsistent, m.pos)
	}
	return nil
}
