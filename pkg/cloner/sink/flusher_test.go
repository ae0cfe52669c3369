package sink

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/go-logr/logr"
	"gotest.tools/v3/assert"
)

// Writing past FlushEvery flushes in the background before Commit, and
// the image is whole after it.
func TestWritesAreFlushedAlongTheWay(t *testing.T) {
	target := filepath.Join(t.TempDir(), "disk.img")
	const every = 8 << 20
	d, err := Open(Options{Path: target, FlushEvery: every, Log: logr.Discard()})
	assert.NilError(t, err)
	assert.Equal(t, d.flush.every, int64(every))
	chunk := make([]byte, 4<<20)
	for i := range chunk {
		chunk[i] = byte(i%251) | 1
	}
	const size = 3 * every
	for off := int64(0); off < size; off += int64(len(chunk)) {
		assert.NilError(t, d.WriteAt(chunk, off))
	}
	fl := d.flush
	assert.NilError(t, d.Commit(size))
	assert.Assert(t, fl.runs.Load() >= 1, "no flush ran before Commit")
	fi, err := os.Stat(target)
	assert.NilError(t, err)
	assert.Equal(t, fi.Size(), int64(size))
}

// A flush that fails fails Commit, which leaves no image; stopping twice
// is safe.
func TestFailedFlushFailsCommit(t *testing.T) {
	r, w, err := os.Pipe() // fdatasync refuses a pipe
	assert.NilError(t, err)
	defer r.Close()
	defer w.Close()
	fl := startFlusher(w, 0)
	assert.Equal(t, fl.every, int64(defaultFlushEvery))
	fl.wrote(defaultFlushEvery)
	err = fl.stop()
	assert.ErrorContains(t, err, "syncing target")
	assert.ErrorContains(t, fl.stop(), "syncing target")

	target := filepath.Join(t.TempDir(), "disk.img")
	d, err := Open(Options{Path: target, Log: logr.Discard()})
	assert.NilError(t, err)
	d.flush.stop() // swap in the failing flusher
	d.flush = startFlusher(w, 0)
	assert.NilError(t, d.WriteAt(make([]byte, 4096), 0))
	d.flush.wrote(defaultFlushEvery)
	assert.ErrorContains(t, d.Commit(4096), "syncing target")
	d.Abort()
	_, err = os.Stat(target)
	assert.Assert(t, os.IsNotExist(err), "a failed Commit left %s", target)
	entries, err := os.ReadDir(filepath.Dir(target))
	assert.NilError(t, err)
	assert.Equal(t, len(entries), 0, "left behind: %v", entries)
}
