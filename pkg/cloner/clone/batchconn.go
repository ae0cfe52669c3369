package clone

import (
	"bufio"
	"errors"
	"net"
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
type batchConn struct {
	net.Conn
	r *bufio.Reader
	w *bufio.Writer
}

func newBatchConn(c net.Conn) *batchConn {
	if tcp, ok := c.(*net.TCPConn); ok {
		_ = tcp.SetWriteBuffer(socketBuffer)
		_ = tcp.SetReadBuffer(socketBuffer)
	}
	return &batchConn{Conn: c, r: bufio.NewReaderSize(c, batchSize), w: bufio.NewWriterSize(c, batchSize)}
}

func (c *batchConn) Read(p []byte) (int, error) {
	if c.w.Buffered() > 0 {
		if err := c.w.Flush(); err != nil {
			return 0, err
		}
	}
	return c.r.Read(p)
}

func (c *batchConn) Write(p []byte) (int, error) { return c.w.Write(p) }

// SetDeadline and SetWriteDeadline flush first: the gathered bytes were
// written under the old deadline. crypto/tls's Close relies on it: it sends
// close_notify, then sets a write deadline of now, before closing.
func (c *batchConn) SetDeadline(t time.Time) error {
	return errors.Join(c.w.Flush(), c.Conn.SetDeadline(t))
}

func (c *batchConn) SetWriteDeadline(t time.Time) error {
	return errors.Join(c.w.Flush(), c.Conn.SetWriteDeadline(t))
}

func (c *batchConn) Close() error {
	return errors.Join(c.w.Flush(), c.Conn.Close())
}
