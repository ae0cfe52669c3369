package readahead

import (
	"context"
	"io"

	"github.com/datavolume/datavolume/pkg/cloner/internal/iobuf"
)

// FillFunc fills buf with the next piece of a stream and says where the
// piece goes. It returns io.EOF itself, not wrapped, with the last piece
// or with none; any other error ends the stream as a failure.
type FillFunc func(buf []byte) (n int, off int64, err error)

type piece struct {
	buf []byte
	off int64
	err error
}

// Pieces calls fill in its own goroutine, up to n buffers of size bytes
// ahead, and hands each piece to use on the caller's goroutine, in order;
// use must not keep the buffer. It returns nil after the piece that came
// with io.EOF, or the first other error from fill, use or ctx. On such a
// failure it calls abort (when not nil) to unblock a fill waiting on I/O.
// Either way it waits for the fill goroutine before it gives the buffers
// back, so no buffer is touched after Pieces returns.
func Pieces(ctx context.Context, n, size int, fill FillFunc, use func(buf []byte, off int64) error, abort func()) error {
	free := make(chan []byte, n)
	full := make(chan piece, n)
	bufs := iobuf.GetN(n, size)
	for _, b := range bufs {
		free <- b
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	defer iobuf.PutAll(bufs) // every return below waits for done first
	go func() {
		defer close(done)
		for {
			var buf []byte
			select {
			case buf = <-free:
			case <-stop:
				return
			}
			m, off, err := fill(buf)
			select {
			case full <- piece{buf: buf[:m], off: off, err: err}:
			case <-stop:
				return
			}
			if err != nil {
				return
			}
		}
	}()
	fail := func(err error) error {
		close(stop)
		if abort != nil {
			abort()
		}
		<-done
		return err
	}
	for {
		var p piece
		select {
		case p = <-full:
		case <-ctx.Done():
			return fail(ctx.Err())
		}
		if p.err != nil && p.err != io.EOF {
			return fail(p.err)
		}
		if err := ctx.Err(); err != nil {
			return fail(err)
		}
		if len(p.buf) > 0 {
			if err := use(p.buf, p.off); err != nil {
				return fail(err)
			}
		}
		if p.err == io.EOF {
			<-done
			return nil
		}
		free <- p.buf[:cap(p.buf)]
	}
}
