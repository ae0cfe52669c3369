package readahead_test

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gotest.tools/v3/assert"

	"github.com/datavolume/datavolume/pkg/cloner/internal/readahead"
)

// countingReaderAt counts the reads that reach the data, and fails the
// ones listed in failAt once each.
type countingReaderAt struct {
	r      io.ReaderAt
	reads  atomic.Int64
	mu     sync.Mutex
	failAt map[int64]bool
}

var errInjected = errors.New("injected read error")

func (c *countingReaderAt) ReadAt(p []byte, off int64) (int, error) {
	c.reads.Add(1)
	c.mu.Lock()
	fail := c.failAt[off]
	delete(c.failAt, off)
	c.mu.Unlock()
	if fail {
		return 0, errInjected
	}
	return c.r.ReadAt(p, off)
}

func data(size int) []byte {
	b := make([]byte, size)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// Small reads in file order, as qemu-img makes of a compressed qcow2,
// reach the data once per window; large reads go straight through.
func TestWindowsSequential(t *testing.T) {
	const size = 10<<20 + 12345
	want := data(size)
	src := &countingReaderAt{r: bytes.NewReader(want)}
	w := readahead.NewWindows(src, size, 4, 1<<20)
	var got []byte
	buf := make([]byte, 50*1024+7)
	for off := int64(0); off < size; {
		n, err := w.ReadAt(buf, off)
		if err != nil {
			assert.Equal(t, err, io.EOF)
		}
		got = append(got, buf[:n]...)
		off += int64(n)
		if n == 0 {
			t.Fatalf("no progress at %d: %v", off, err)
		}
	}
	assert.Assert(t, bytes.Equal(got, want))
	assert.Equal(t, src.reads.Load(), int64(11), "one read per 1 MiB window")

	big := make([]byte, 2<<20)
	before := src.reads.Load()
	n, err := w.ReadAt(big, 3<<20+5)
	assert.NilError(t, err)
	assert.Equal(t, n, len(big))
	assert.Assert(t, bytes.Equal(big, want[3<<20+5:5<<20+5]))
	assert.Equal(t, src.reads.Load()-before, int64(1), "a read of a window or more is not cached")

	_, err = w.ReadAt(buf, -1)
	assert.ErrorContains(t, err, "negative offset")
	n, err = w.ReadAt(buf, size)
	assert.Equal(t, n, 0)
	assert.Equal(t, err, io.EOF)
}

// Concurrent reads at random offsets, spanning windows, return the data;
// a failed window read fails only the reads waiting on it, and is tried
// again by the next read.
func TestWindowsConcurrentAndFailing(t *testing.T) {
	const size = 8 << 20
	want := data(size)
	src := &countingReaderAt{r: bytes.NewReader(want), failAt: map[int64]bool{2 << 20: true}}
	w := readahead.NewWindows(src, size, 3, 512<<10)

	// The injected failure, first: the window at 2 MiB fails once.
	p := make([]byte, 1000)
	_, err := w.ReadAt(p, 2<<20+10)
	assert.ErrorIs(t, err, errInjected)
	n, err := w.ReadAt(p, 2<<20+10)
	assert.NilError(t, err)
	assert.Assert(t, bytes.Equal(p[:n], want[2<<20+10:2<<20+1010]))

	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 9))
			buf := make([]byte, 300<<10)
			for range 300 {
				off := rng.Int64N(size)
				l := 1 + rng.IntN(len(buf)-1)
				n, err := w.ReadAt(buf[:l], off)
				if err != nil && !(err == io.EOF && off+int64(l) > size) {
					errs <- err
					return
				}
				if !bytes.Equal(buf[:n], want[off:off+int64(n)]) {
					errs <- errors.New("wrong bytes")
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// blockingReaderAt holds every read at off until release is closed.
type blockingReaderAt struct {
	r       io.ReaderAt
	off     int64
	started chan struct{}
	release chan struct{}
	done    atomic.Bool
}

func (b *blockingReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off == b.off {
		close(b.started)
		<-b.release
		defer b.done.Store(true)
	}
	return b.r.ReadAt(p, off)
}

// Close gives the buffers back only once no read or read-ahead can touch
// them: it waits for a read-ahead still reading, and reads after it fail.
func TestWindowsCloseWaitsForReadAhead(t *testing.T) {
	const size = 4 << 20
	want := data(size)
	src := &blockingReaderAt{r: bytes.NewReader(want), off: 1 << 20, started: make(chan struct{}), release: make(chan struct{})}
	w := readahead.NewWindows(src, size, 4, 1<<20)
	p := make([]byte, 100)
	n, err := w.ReadAt(p, 10) // starts reading ahead the window at 1 MiB
	assert.NilError(t, err)
	assert.Assert(t, bytes.Equal(p[:n], want[10:110]))
	<-src.started

	closed := make(chan struct{})
	go func() {
		_ = w.Close()
		close(closed)
	}()
	select {
	case <-closed:
		t.Fatal("Close returned while a read-ahead was still reading into a window")
	case <-time.After(100 * time.Millisecond):
	}
	close(src.release)
	<-closed
	assert.Assert(t, src.done.Load(), "Close returned before the read-ahead finished")

	_, err = w.ReadAt(p, 10)
	assert.ErrorIs(t, err, readahead.ErrClosed)
}
