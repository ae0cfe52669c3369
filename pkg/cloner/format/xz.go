package format

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// xzThreadsMemory bounds the memory of xz's threaded decoder, so the
// cloner's peak RSS stays far under its 256 MiB budget.
const xzThreadsMemory = "128MiB"

// pipeSize enlarges the pipes to and from xz: fewer wake-ups per MiB.
const pipeSize = 1 << 20

// xzReader streams through `xz -dc`.
type xzReader struct {
	closing  chan struct{}
	cmd      *exec.Cmd
	out      *os.File
	stderr   bytes.Buffer
	copyErr  error
	copyDone chan struct{}
	waitOnce sync.Once
	waitErr  error
}

func newXZ(ctx context.Context, r io.Reader) (io.ReadCloser, error) {
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, err
	}
	for _, f := range []*os.File{inW, outR} {
		growPipe(f)
	}
	x := &xzReader{out: outR, copyDone: make(chan struct{}), closing: make(chan struct{})}
	// Threads decode the blocks of a multi-block stream (what xz -T0
	// writes) in parallel; under the memory limit, which bounds what a
	// large-dictionary stream would take, xz falls back to one thread.
	x.cmd = exec.CommandContext(ctx, "xz", "--decompress", "--stdout", "--threads=0", "--memlimit-mt-decompress="+xzThreadsMemory)
	x.cmd.Stdin, x.cmd.Stdout = inR, outW
	x.cmd.Stderr = &limitedBuffer{buf: &x.stderr, max: 4096}
	if err := x.cmd.Start(); err != nil {
		inR.Close()
		inW.Close()
		outR.Close()
		outW.Close()
		return nil, fmt.Errorf("starting xz (run hack/install-deps.sh): %w", err)
	}
	inR.Close()
	outW.Close()
	go func() {
		defer close(x.copyDone)
		defer inW.Close()
		if err := x.feed(inW, r); err != nil && !errors.Is(err, unix.EPIPE) && !errors.Is(err, os.ErrClosed) {
			x.copyErr = err
		}
	}()
	return x, nil
}

func (x *xzReader) Read(p []byte) (int, error) {
	x.batch(len(p))
	n, err := x.out.Read(p)
	if err == io.EOF {
		<-x.copyDone
		if x.copyErr != nil {
			return n, x.copyErr
		}
		if werr := x.wait(); werr != nil {
			return n, werr
		}
	}
	return n, err
}

func (x *xzReader) wait() error {
	x.waitOnce.Do(func() {
		if err := x.cmd.Wait(); err != nil {
			msg := strings.TrimSpace(x.stderr.String())
			if msg == "" {
				msg = err.Error()
			}
			x.waitErr = fmt.Errorf("decompressing xz: %s", msg)
		}
	})
	return x.waitErr
}

func (x *xzReader) Close() error {
	close(x.closing)
	x.out.Close()
	if x.cmd.ProcessState == nil {
		_ = x.cmd.Process.Kill()
	}
	_ = x.wait()
	<-x.copyDone
	return nil
}

// feed copies r into xz's stdin without ever blocking on a full pipe:
// xz reads 8 KiB at a time, and a writer blocked on a full pipe is woken
// by every such read, a context switch per 8 KiB. Writing only into free
// room, polled every so often, keeps xz from waking us.
func (x *xzReader) feed(w *os.File, r io.Reader) error {
	rc, err := w.SyscallConn()
	if err != nil {
		return err
	}
	buf := make([]byte, pipeSize)
	for {
		n, rerr := r.Read(buf)
		data := buf[:n]
		for len(data) > 0 {
			queued := 0
			_ = rc.Control(func(fd uintptr) { queued, _ = unix.IoctlGetInt(int(fd), unix.TIOCINQ) })
			room := pipeSize - queued
			if room < min(len(data), pipeSize/4) {
				select {
				case <-x.closing:
					return os.ErrClosed
				case <-time.After(batchPoll):
				}
				continue
			}
			m, err := w.Write(data[:min(room, len(data))])
			if err != nil {
				return err
			}
			data = data[m:]
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

// batch lets xz's output accumulate before a read. xz writes 8 KiB at a
// time; reading each write as it comes costs a context switch per 8 KiB,
// which doubles the time of a decompression on a busy VM. Waiting up to a
// couple of milliseconds for a fuller pipe cuts that by two orders of
// magnitude; xz itself never waits, the pipe holds a MiB.
func (x *xzReader) batch(want int) {
	want = min(want, pipeSize/2)
	rc, err := x.out.SyscallConn()
	if err != nil {
		return
	}
	for waited := time.Duration(0); waited < maxBatchWait; waited += batchPoll {
		avail := 0
		_ = rc.Control(func(fd uintptr) { avail, _ = unix.IoctlGetInt(int(fd), unix.TIOCINQ) }) // TIOCINQ is FIONREAD
		if avail >= want || x.cmd.ProcessState != nil {
			return
		}
		time.Sleep(batchPoll)
	}
}

const (
	batchPoll    = 250 * time.Microsecond
	maxBatchWait = 2 * time.Millisecond
)

// limitedBuffer keeps the first max bytes of a tool's stderr.
type limitedBuffer struct {
	buf *bytes.Buffer
	max int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.max - l.buf.Len(); room > 0 {
		l.buf.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

// onlyReader and onlyWriter hide ReaderFrom/WriterTo so CopyBuffer uses
// our large buffer.
type onlyReader struct{ io.Reader }
type onlyWriter struct{ io.Writer }

// growPipe enlarges a pipe's buffer, best effort. It goes through
// SyscallConn: File.Fd would switch the pipe to blocking mode and cost a
// thread hand-off on every read.
func growPipe(f *os.File) {
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) { _, _ = unix.FcntlInt(fd, unix.F_SETPIPE_SZ, pipeSize) })
}
