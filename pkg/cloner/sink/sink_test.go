package sink_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/go-logr/logr"
	"gotest.tools/v3/assert"

	"github.com/datavolume/datavolume/pkg/cloner/internal/testenv"
	"github.com/datavolume/datavolume/pkg/cloner/sink"
)

func data(n int, b byte) []byte { return bytes.Repeat([]byte{b}, n) }

func readAll(t *testing.T, path string) []byte {
	t.Helper()
	got, err := os.ReadFile(path)
	assert.NilError(t, err)
	return got
}

func TestFileSink(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "disk.img")
	d, err := sink.Open(sink.Options{Path: target, Size: 8 << 20, Log: logr.Discard()})
	assert.NilError(t, err)
	assert.NilError(t, d.WriteAt(data(4096, 1), 0))
	assert.NilError(t, d.WriteAt(make([]byte, 1<<20), 4096)) // zeros: a hole
	assert.NilError(t, d.WriteAt(data(100, 2), 3<<20))
	_, err = os.Stat(target)
	assert.Assert(t, os.IsNotExist(err), "disk.img appears only at Commit")
	assert.ErrorContains(t, d.WriteAt(data(1, 3), 0), "goes back")
	assert.NilError(t, d.Commit(3<<20+100))
	got := readAll(t, target)
	want := make([]byte, 8<<20)
	copy(want, data(4096, 1))
	copy(want[3<<20:], data(100, 2))
	assert.Assert(t, bytes.Equal(got, want))
	entries, err := os.ReadDir(dir)
	assert.NilError(t, err)
	assert.Equal(t, len(entries), 1, "no temporary file is left")
}

func TestFileSinkAbortAndLimits(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "disk.img")
	d, err := sink.Open(sink.Options{Path: target, Size: 1 << 20})
	assert.NilError(t, err)
	assert.ErrorIs(t, d.CheckFits(2<<20), sink.ErrTooLarge)
	assert.Error(t, d.CheckFits(2<<20), "image is larger than the target: the image needs 2097152 bytes (2 MiB), the target holds 1048576 bytes (1 MiB)")
	var tooLarge *sink.TooLargeError
	assert.Assert(t, errors.As(d.CheckFits(3<<20), &tooLarge))
	assert.DeepEqual(t, *tooLarge, sink.TooLargeError{ImageSize: 3 << 20, TargetSize: 1 << 20})
	assert.ErrorIs(t, d.WriteAt(make([]byte, 4096), 1<<20), sink.ErrTooLarge, "even zeros past the end are refused")
	assert.Error(t, d.WriteAt(make([]byte, 4096), 1<<20), "image is larger than the target: its data continues past the target's 1048576 bytes (1 MiB)")
	assert.NilError(t, d.WriteAt(data(10, 1), 0))
	d.Abort()
	entries, err := os.ReadDir(dir)
	assert.NilError(t, err)
	assert.Equal(t, len(entries), 0)
}

// TestBlockSink writes to a loop device full of 0xAA: zero ranges and
// the tail must read back as zeros, and the head appears only at Commit.
func TestSize(t *testing.T) {
	for n, want := range map[int64]string{
		0: "0 bytes", 1023: "1023 bytes", 1024: "1024 bytes (1 KiB)", 1536: "1536 bytes (1.5 KiB)",
		10 << 30: "10737418240 bytes (10 GiB)", 1<<30 + 1<<20: "1074790400 bytes (1 GiB)", 5 << 40: "5497558138880 bytes (5 TiB)",
		1<<30 + 300<<20: "1388314624 bytes (1.29 GiB)",
	} {
		assert.Equal(t, sink.Size(n), want)
	}
}

func TestBlockSink(t *testing.T) {
	dev := testenv.BlockDevice(t, 4<<20)
	d, err := sink.Open(sink.Options{Path: dev, Log: logr.Discard()})
	assert.NilError(t, err)
	assert.Assert(t, d.IsBlock())
	assert.Equal(t, d.Capacity(), int64(4<<20))
	assert.NilError(t, d.WriteAt(data(512, 1), 0))
	assert.NilError(t, d.WriteAt(make([]byte, 8192), 512))
	assert.NilError(t, d.WriteAt(data(4096, 2), (1<<20)+8192))
	assert.NilError(t, d.WriteAt(data(100, 3), 2<<20+5))

	head := make([]byte, 512)
	f, err := os.Open(dev)
	assert.NilError(t, err)
	defer f.Close()
	_, err = f.ReadAt(head, 0)
	assert.NilError(t, err)
	assert.Assert(t, bytes.Equal(head, make([]byte, 512)), "the head is zero until Commit")

	assert.NilError(t, d.Commit(2<<20+105))
	want := make([]byte, 4<<20)
	copy(want, data(512, 1))
	copy(want[1<<20+8192:], data(4096, 2))
	copy(want[2<<20+5:], data(100, 3))
	got := make([]byte, 4<<20)
	_, err = f.ReadAt(got, 0)
	assert.NilError(t, err)
	for off := 0; off < len(got); off += 4096 {
		if !bytes.Equal(got[off:off+4096], want[off:off+4096]) {
			t.Fatalf("block at %d differs: old data shows through", off)
		}
	}
}

func TestBlockSinkAbortZeroesHead(t *testing.T) {
	dev := testenv.BlockDevice(t, 2<<20)
	d, err := sink.Open(sink.Options{Path: dev})
	assert.NilError(t, err)
	assert.NilError(t, d.WriteAt(data(4096, 1), 0))
	d.Abort()
	got := readAll(t, dev)
	assert.Assert(t, bytes.Equal(got[:1<<20], make([]byte, 1<<20)))
}
