package importer

import (
	"context"
	"io"

	"github.com/datavolume/datavolume/pkg/cloner/internal/iobuf"
	"github.com/datavolume/datavolume/pkg/cloner/internal/readahead"
	"github.com/datavolume/datavolume/pkg/cloner/sink"
)

type filled struct {
	buf []byte
	off int64 // where buf goes on the disk
	err error
}

// fillFunc fills buf with the next piece of the image and says where it
// goes; it returns io.EOF with the last piece (or with none).
type fillFunc func(buf []byte) (n int, off int64, err error)

// pump copies r to disk in chunks: one goroutine reads (and so
// decompresses), the caller's goroutine detects zeros and writes. It
// returns the number of bytes copied. On failure it closes src so that a
// reader blocked on the network returns, then waits for it.
func pump(ctx context.Context, r io.Reader, disk *sink.Disk, src io.Closer) (int64, error) {
	var off int64
	return pumpChunks(ctx, func(buf []byte) (int, int64, error) {
		n, err := readahead.Fill(r, buf)
		at := off
		off += int64(n)
		return n, at, err
	}, disk, src)
}

// pumpChunks is pump over pieces that fill produces; it returns the end of
// the last piece written.
func pumpChunks(ctx context.Context, fill fillFunc, disk *sink.Disk, src io.Closer) (int64, error) {
	free := make(chan []byte, chunks)
	full := make(chan filled, chunks)
	bufs := iobuf.GetN(chunks, chunkSize)
	for _, b := range bufs {
		free <- b
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	// Every return waits for done first, so the reader holds no buffer.
	defer iobuf.PutAll(bufs)
	go func() {
		defer close(done)
		for {
			var buf []byte
			select {
			case buf = <-free:
			case <-stop:
				return
			}
			n, off, err := fill(buf)
			select {
			case full <- filled{buf: buf[:n], off: off, err: err}:
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
	var end int64
	for {
		var c filled
		select {
		case c = <-full:
		case <-ctx.Done():
			return fail(ctx.Err())
		}
		if len(c.buf) > 0 {
			if err := disk.WriteAt(c.buf, c.off); err != nil {
				return fail(err)
			}
			end = c.off + int64(len(c.buf))
		}
		if c.err == io.EOF {
			<-done
			return end, nil
		}
		if c.err != nil {
			return fail(c.err)
		}
		free <- c.buf[:cap(c.buf)]
	}
}
