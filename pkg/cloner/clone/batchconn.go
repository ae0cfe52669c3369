package clone

import (
	"bufio"
	"errors"
	"net"
	"sync"
	"time"
)

// batchSize is how much a batchConn gathers per system call.
const batchSize = 256 << 10

// socketBuffer is the socket's send and receive buffer.
const socketBuffer = 4 << 20

// batchConn sits under crypto/tls and turns its record-sized I/O into large
// system calls. TLS records hold at most 16 KiB, and crypto/tls writes each
// with its own write(2) and reads barely more than one per read(2): over a
// GiB that is some 65,000 system calls each way, and on the VMs measured a
// system call costs more than the data it moves. Writes are gathered until
// the buffer is full or the connection is about to wait for the peer (a
// Read), change a deadline or close, so request/answer exchanges (the TLS
// handshake, the clone header, the final confirmation) still go out at once.
//
// Close, SetDeadline and SetWriteDeadline may come from another goroutine
// to interrupt a blocked Read or Write, as net.Conn allows: crypto/tls
// does so when a handshake's context ends. They flush only when no Write
// or flush is under way; otherwise they go straight to the socket, which
// is what unblocks it.
type batchConn struct {
	net.Conn
	r *bufio.Reader

	mu sync.Mutex // guards w
	w  *bufio.Writer
}

func newBatchConn(c net.Conn) *batchConn {
	if tcp, ok := c.(*net.TCPConn); ok {
		_ = tcp.SetWriteBuffer(socketBuffer)
		_ = tcp.SetReadBuffer(socketBuffer)
	}
	return &batchConn{Conn: c, r: bufio.NewReaderSize(c, batchSize), w: bufio.NewWriterSize(c, batchSize)}
}

func (c *batchConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	var err error
	if c.w.Buffered() > 0 {
		err = c.w.Flush()
	}
	c.mu.Unlock()
	if err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

func (c *batchConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.w.Write(p)
}

// tryFlush flushes unless a Write or flush is under way in another
// goroutine, which the caller is then interrupting.
func (c *batchConn) tryFlush() error {
	if !c.mu.TryLock() {
		return nil
	}
	defer c.mu.Unlock()
	return c.w.Flush()
}

// SetDeadline and SetWriteDeadline flush first: the gathered bytes were
// written under the old deadline. crypto/tls's Close relies on it: it sends
// close_notify, then sets a write deadline of now, before closing.
func (c *batchConn) SetDeadline(t time.Time) error {
	return errors.Join(c.tryFlush(), c.Conn.SetDeadline(t))
}

func (c *batchConn) SetWriteDeadline(t time.Time) error {
	return errors.Join(c.tryFlush(), c.Conn.SetWriteDeadline(t))
}

func (c *batchConn) Close() error {
	return errors.Join(c.tryFlush(), c.Conn.Close())
}
