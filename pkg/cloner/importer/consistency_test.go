package importer

import (
	"bytes"
	"io"
	"testing"
	"testing/iotest"

	"gotest.tools/v3/assert"
)

// TestRangeLogMatch pins down the proof that reads at offsets returned the
// download's bytes: overlapping and adjacent reads, any chunking of the
// download, a differing byte anywhere, and reads past its end.
func TestRangeLogMatch(t *testing.T) {
	data := make([]byte, 1000)
	for i := range data {
		data[i] = byte(i * 7)
	}
	reads := [][2]int64{{0, 100}, {50, 300}, {300, 310}, {310, 311}, {900, 1000}, {40, 60}}
	record := func(served []byte) *rangeLog {
		l := &rangeLog{r: bytes.NewReader(served)}
		for _, r := range reads {
			_, err := l.ReadAt(make([]byte, r[1]-r[0]), r[0])
			assert.NilError(t, err)
		}
		return l
	}
	for name, chunked := range map[string]func(io.Reader) io.Reader{
		"whole":    func(r io.Reader) io.Reader { return r },
		"one-byte": iotest.OneByteReader,
		"half":     iotest.HalfReader,
	} {
		t.Run(name, func(t *testing.T) {
			m := record(data).matcher(chunked(bytes.NewReader(data)))
			_, err := io.Copy(io.Discard, m)
			assert.NilError(t, err)
			assert.NilError(t, m.checkAll())

			for _, at := range []int{0, 75, 305, 310, 999} {
				altered := bytes.Clone(data)
				altered[at]++
				m := record(altered).matcher(chunked(bytes.NewReader(data)))
				_, err := io.Copy(io.Discard, m)
				assert.ErrorIs(t, err, ErrSourceInconsistent, "byte %d altered", at)
			}

			// The download stops before a read made at offsets.
			m = record(data).matcher(chunked(bytes.NewReader(data[:950])))
			_, err = io.Copy(io.Discard, m)
			assert.NilError(t, err)
			assert.ErrorIs(t, m.checkAll(), ErrSourceInconsistent)
		})
	}
}

func TestCheckedHead(t *testing.T) {
	data := []byte("QFI\xfbheader-and-the-rest")
	head := bytes.Clone(data[:10])
	c := &checkedHead{r: bytes.NewReader(data), head: head}
	buf := make([]byte, 8)
	_, err := c.ReadAt(buf, 6)
	assert.NilError(t, err)
	_, err = c.ReadAt(buf, 12)
	assert.NilError(t, err)

	other := bytes.Clone(data)
	other[8] = 'X'
	c = &checkedHead{r: bytes.NewReader(other), head: head}
	_, err = c.ReadAt(buf, 6)
	assert.ErrorIs(t, err, ErrSourceInconsistent)
	_, err = c.ReadAt(buf, 10)
	assert.NilError(t, err, "past the checked head")
}
