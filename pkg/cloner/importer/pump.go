package importer

import (
	"context"
	"io"

	"github.com/datavolume/datavolume/pkg/cloner/internal/readahead"
	"github.com/datavolume/datavolume/pkg/cloner/sink"
)

type filled struct {
	buf []byte
	err error
}

// pump copies r to disk in chunks: one goroutine reads (and so
// decompresses), the caller's goroutine detects zeros and writes. It
// returns the number of bytes copied. On failure it closes src so that a
// reader blocked on the network returns, then waits for it.
func pump(ctx context.Context, r io.Reader, disk *sink.Disk, src io.Closer) (int64, error) {
	free := make(chan []byte, chunks)
	full := make(chan filled, chunks)
	for range chunks {
		free <- make([]byte, chunkSize)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			var buf []byte
			select {
			case buf = <-free:
			case <-stop:
				return
			}
			n, err := readahead.Fill(r, buf)
			select {
			case full <- filled{buf: buf[:n], err: err}:
			case <-stop:
				return
			}
			if err != nil {
				return
			}
		}
	}()
	fail := func(err error) (int64, error) {
		close(stop)
		src.Close()
		<-done
		return 0, err
	}
	var off int64
	for {
		var c filled
		select {
		case c = <-full:
		case <-ctx.Done():
			return fail(ctx.Err())
		}
		if len(c.buf) > 0 {
			if err := disk.WriteAt(c.buf, off); err != nil {
				return fail(err)
			}
			off += int64(len(c.buf))
		}
		if c.err == io.EOF {
			<-done
			return off, nil
		}
		if c.err != nil {
			return fail(c.err)
		}
		free <- c.buf[:cap(c.buf)]
	}
}
