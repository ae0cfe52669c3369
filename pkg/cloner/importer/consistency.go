package importer

import (
	"bytes"
	"errors"
	"fmt"
	"io"
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
