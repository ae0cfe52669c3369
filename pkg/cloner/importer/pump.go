package importer

import (
	"context"
	"io"

	"github.com/datavolume/datavolume/pkg/cloner/internal/readahead"
	"github.com/datavolume/datavolume/pkg/cloner/sink"
)

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
func pumpChunks(ctx context.Context, fill readahead.FillFunc, disk *sink.Disk, src io.Closer) (int64, error) {
	var end int64
	err := readahead.Pieces(ctx, chunks, chunkSize, fill, func(buf []byte, off int64) error {
		if err := disk.WriteAt(buf, off); err != nil {
			return err
		}
		end = off + int64(len(buf))
		return nil
	}, func() { src.Close() })
	if err != nil {
		return 0, err
	}
	return end, nil
}
