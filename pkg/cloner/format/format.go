// Package format recognises image formats by their magic bytes and peels
// off compression layers.
package format

import (
	"bytes"
	"context"
	"fmt"
	"io"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// Format is what the first bytes of a stream say it is.
type Format string

// Formats the importer knows. Anything unrecognised is Raw.
const (
	Gzip  Format = "gzip"
	Xz    Format = "xz"
	Zstd  Format = "zstd"
	Qcow2 Format = "qcow2"
	Tar   Format = "tar"
	Raw   Format = "raw"
)

// SniffLen is how many leading bytes Sniff wants to see; fewer are fine at
// the end of a short stream.
const SniffLen = 512

var magics = []struct {
	format Format
	offset int
	magic  []byte
}{
	{Gzip, 0, []byte{0x1f, 0x8b}},
	{Xz, 0, []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}},
	{Zstd, 0, []byte{0x28, 0xb5, 0x2f, 0xfd}},
	{Qcow2, 0, []byte{'Q', 'F', 'I', 0xfb}},
	{Tar, 257, []byte("ustar")}, // both POSIX "ustar\0" and GNU "ustar "
}

// Sniff returns the format the leading bytes of a stream announce.
func Sniff(head []byte) Format {
	for _, m := range magics {
		if len(head) >= m.offset+len(m.magic) && bytes.Equal(head[m.offset:m.offset+len(m.magic)], m.magic) {
			return m.format
		}
	}
	return Raw
}

// Compressed tells whether f is a compression layer.
func (f Format) Compressed() bool { return f == Gzip || f == Xz || f == Zstd }

// zstdMaxWindow bounds the decoder's memory; zstd's own CLI defaults to
// 128 MiB and images compressed with --long beyond that are rare.
const zstdMaxWindow = 128 << 20

// Decompress returns a reader of the decompressed stream. xz is decoded by
// liblzma, the xz tool's library, several times faster than a pure-Go
// decoder and threaded.
func Decompress(ctx context.Context, f Format, r io.Reader) (io.ReadCloser, error) {
	switch f {
	case Gzip:
		zr, err := gzip.NewReader(r)
		if err != nil {
			return nil, fmt.Errorf("reading gzip header: %w", err)
		}
		return &wrapErr{r: zr, what: "gzip"}, nil
	case Zstd:
		zr, err := zstd.NewReader(r, zstd.WithDecoderMaxWindow(zstdMaxWindow), zstd.WithDecoderConcurrency(2))
		if err != nil {
			return nil, fmt.Errorf("reading zstd: %w", err)
		}
		return &wrapErr{r: zr.IOReadCloser(), what: "zstd"}, nil
	case Xz:
		return newXZ(ctx, r)
	default:
		return nil, fmt.Errorf("%s is not a compression format", f)
	}
}

// wrapErr names the layer in decoding errors ("gzip: unexpected EOF").
type wrapErr struct {
	r    io.ReadCloser
	what string
}

func (w *wrapErr) Read(p []byte) (int, error) {
	n, err := w.r.Read(p)
	if err != nil && err != io.EOF {
		err = fmt.Errorf("decompressing %s: %w", w.what, err)
	}
	return n, err
}

func (w *wrapErr) Close() error { return w.r.Close() }
