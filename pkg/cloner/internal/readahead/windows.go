package readahead

import (
	"errors"
	"io"
	"slices"
	"sync"

	"github.com/datavolume/datavolume/pkg/cloner/internal/iobuf"
)

// ErrClosed is what a Windows read after Close returns.
var ErrClosed = errors.New("read ahead windows are closed")

// Windows serves small reads at offsets from aligned windows read whole:
// qemu-img converting a compressed qcow2 reads it in thousands of ~50 KiB
// pieces, mostly in file order, and each would otherwise be a separate
// HTTP range request. Reads of at least a window go straight through.
type Windows struct {
	r    io.ReaderAt
	size int64 // of the data behind r
	win  int64

	mu     sync.Mutex
	cached []*window // most recently used last
	free   [][]byte  // buffers of evicted windows, reused: fresh pages cost more than copies
	bufs   [][]byte  // every buffer taken, given back by Close
	max    int
	closed bool
	// busy counts reads and read-aheads under way; Close waits for them.
	busy sync.WaitGroup
}

type window struct {
	off   int64
	buf   []byte
	err   error
	ready chan struct{} // closed once buf or err is set
	users int           // reads copying out of buf; it is not reused while > 0
}

// NewWindows caches up to n windows of winSize bytes of r, which holds
// size bytes.
func NewWindows(r io.ReaderAt, size int64, n, winSize int) *Windows {
	return &Windows{r: r, size: size, win: int64(winSize), max: n}
}

// ReadAt implements io.ReaderAt.
func (w *Windows) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("negative offset")
	}
	if !w.enter() {
		return 0, ErrClosed
	}
	defer w.busy.Done()
	if int64(len(p)) >= w.win {
		return w.r.ReadAt(p, off)
	}
	n := 0
	for n < len(p) {
		pos := off + int64(n)
		if pos >= w.size {
			return n, io.EOF
		}
		win, err := w.get(pos-pos%w.win, true)
		if err != nil {
			return n, err
		}
		c := copy(p[n:], win.buf[pos-win.off:])
		w.release(win)
		n += c
	}
	return n, nil
}

// get returns the window at off, reading it if no other read is; the
// caller must release it. When ahead is set, a read that has to read its
// window itself starts reading the next one too, so that reads in file
// order seldom wait.
func (w *Windows) get(off int64, ahead bool) (*window, error) {
	w.mu.Lock()
	for i, c := range w.cached {
		if c.off == off {
			c.users++
			copy(w.cached[i:], w.cached[i+1:])
			w.cached[len(w.cached)-1] = c
			w.mu.Unlock()
			<-c.ready
			if c.err != nil {
				w.release(c)
				return nil, c.err
			}
			return c, nil
		}
	}
	c := &window{off: off, ready: make(chan struct{}), users: 1}
	w.evict()
	w.cached = append(w.cached, c)
	var buf []byte
	if k := len(w.free); k > 0 {
		buf, w.free = w.free[k-1], w.free[:k-1]
	} else {
		buf = iobuf.Get(int(w.win))
		w.bufs = append(w.bufs, buf)
	}
	w.mu.Unlock()

	// This read is counted in busy, so the read-ahead may join it even
	// while Close waits.
	if next := off + w.win; ahead && next < w.size && w.enter() {
		go func() {
			defer w.busy.Done()
			if c, err := w.get(next, false); err == nil {
				w.release(c)
			}
		}()
	}
	n, err := w.r.ReadAt(buf[:min(w.win, w.size-off)], off)
	if err == io.EOF && int64(n) == min(w.win, w.size-off) {
		err = nil
	}
	w.mu.Lock()
	c.buf, c.err = buf[:n], err
	if err != nil {
		// Forget it, so that a later read tries again.
		if i := slices.Index(w.cached, c); i >= 0 {
			w.cached = slices.Delete(w.cached, i, i+1)
		}
	}
	w.mu.Unlock()
	close(c.ready)
	if err != nil {
		w.release(c)
		return nil, err
	}
	return c, nil
}

// evict drops the least recently used windows beyond the limit that no
// read is using; called with mu held.
func (w *Windows) evict() {
	for i := 0; len(w.cached) >= w.max && i < len(w.cached); {
		c := w.cached[i]
		if c.users > 0 {
			i++
			continue
		}
		w.cached = slices.Delete(w.cached, i, i+1)
		if c.err == nil {
			w.free = append(w.free, c.buf[:cap(c.buf)])
		}
	}
}

// enter counts a read in busy unless the windows are closed.
func (w *Windows) enter() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return false
	}
	w.busy.Add(1)
	return true
}

// Close waits for the reads under way, read-aheads included, and gives
// the buffers back. Later reads fail with ErrClosed.
func (w *Windows) Close() error {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
	w.busy.Wait()
	w.mu.Lock()
	defer w.mu.Unlock()
	iobuf.PutAll(w.bufs)
	w.bufs, w.free, w.cached = nil, nil, nil
	return nil
}

func (w *Windows) release(c *window) {
	w.mu.Lock()
	defer w.mu.Unlock()
	c.users--
}
