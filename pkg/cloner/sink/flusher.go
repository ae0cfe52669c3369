package sink

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// defaultFlushEvery is how much written data asks for a background flush
// unless Options.FlushEvery says otherwise.
const defaultFlushEvery = 64 << 20

// flusher makes the data written so far durable in the background while
// more arrives, so that Commit's fsync only waits for the tail. Direct I/O
// skips the page cache, not the disk's write cache: on the VMs measured
// the fsync after 256 MiB of O_DIRECT writes took 0.15 s, the cache being
// written out, and 0.02-0.04 s when flushes had run along the way.
type flusher struct {
	f     *os.File
	every int64 // bytes written between flush requests
	kick  chan struct{}
	done  chan struct{}
	err   error // the first failure; read only once done is closed
	runs  atomic.Int64
	since int64 // bytes written since the last request; writer's goroutine only
	once  sync.Once
}

func startFlusher(f *os.File, every int64) *flusher {
	if every <= 0 {
		every = defaultFlushEvery
	}
	fl := &flusher{f: f, every: every, kick: make(chan struct{}, 1), done: make(chan struct{})}
	go func() {
		defer close(fl.done)
		for range fl.kick {
			if fl.err != nil {
				continue
			}
			fl.runs.Add(1)
			if err := unix.Fdatasync(int(f.Fd())); err != nil {
				// Kept for Commit: a write-back error is reported once.
				fl.err = fmt.Errorf("syncing target: %w", err)
			}
		}
	}()
	return fl
}

// wrote counts n bytes written and asks for a flush every fl.every
// bytes. A request while a flush runs waits for it; more are dropped, as
// the next flush covers them.
func (fl *flusher) wrote(n int64) {
	fl.since += n
	if fl.since < fl.every {
		return
	}
	fl.since = 0
	select {
	case fl.kick <- struct{}{}:
	default:
	}
}

// stop waits for the flush under way and returns the first failure; it
// may be called again (Abort after a failed Commit).
func (fl *flusher) stop() error {
	fl.once.Do(func() { close(fl.kick) })
	<-fl.done
	return fl.err
}
