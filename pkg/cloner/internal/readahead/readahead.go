// Package readahead reads a stream ahead in its own goroutine so that the
// network, decompression and disk writes overlap.
package readahead

import (
	"io"

	"github.com/datavolume/datavolume/pkg/cloner/internal/iobuf"
)

type chunk struct {
	buf []byte
	err error
}

// Reader reads ahead of its consumer in buffers of a fixed size.
type Reader struct {
	full chan chunk
	free chan []byte
	stop chan struct{}
	cur  chunk
	off  int
}

// New starts reading r ahead with n buffers of size bytes each. Close
// stops the goroutine; it does not close r. The caller must Close the
// Reader, and must not Read after that.
func New(r io.Reader, n, size int) *Reader {
	ra := &Reader{full: make(chan chunk, n), free: make(chan []byte, n), stop: make(chan struct{})}
	bufs := iobuf.GetN(n, size)
	for _, b := range bufs {
		ra.free <- b
	}
	go func() {
		ra.fill(r)
		// The buffers go back once neither side can touch them: this
		// goroutine is done, and Close means the consumer is too.
		<-ra.stop
		iobuf.PutAll(bufs)
	}()
	return ra
}

func (ra *Reader) fill(r io.Reader) {
	for {
		var buf []byte
		select {
		case buf = <-ra.free:
		case <-ra.stop:
			return
		}
		// Fill whole buffers: handing over a buffer per network read
		// would cost a goroutine wake-up every few KiB.
		n, err := Fill(r, buf[:cap(buf)])
		select {
		case ra.full <- chunk{buf: buf[:n], err: err}:
		case <-ra.stop:
			return
		}
		if err != nil {
			return
		}
	}
}

func (ra *Reader) Read(p []byte) (int, error) {
	for ra.off >= len(ra.cur.buf) {
		if ra.cur.err != nil {
			return 0, ra.cur.err
		}
		if ra.cur.buf != nil {
			ra.free <- ra.cur.buf
		}
		ra.cur, ra.off = <-ra.full, 0
	}
	n := copy(p, ra.cur.buf[ra.off:])
	ra.off += n
	return n, nil
}

// Close stops reading ahead.
func (ra *Reader) Close() error {
	select {
	case <-ra.stop:
	default:
		close(ra.stop)
	}
	return nil
}

// Fill reads until buf is full or r fails; unlike io.ReadFull it passes r's
// own error through, so a truncated stream is never mistaken for EOF.
func Fill(r io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}
