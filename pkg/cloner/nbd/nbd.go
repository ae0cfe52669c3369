// Package nbd serves an io.ReaderAt as a read-only NBD export, so qemu-img
// can convert a qcow2 image it reads over our own HTTP client (custom CA,
// basic auth, retries) without scratch space and without ever seeing the
// credentials.
//
// Only what a read-only export needs is implemented: the fixed newstyle
// handshake with NBD_OPT_GO, NBD_OPT_INFO and NBD_OPT_EXPORT_NAME, and
// simple replies to NBD_CMD_READ and NBD_CMD_DISC.
package nbd

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"

	"github.com/go-logr/logr"
)

const (
	nbdMagic         = 0x4e42444d41474943 // "NBDMAGIC"
	optMagic         = 0x49484156454f5054 // "IHAVEOPT"
	replyMagic       = 0x3e889045565a9
	requestMagic     = 0x25609513
	simpleReplyMagic = 0x67446698

	flagFixedNewstyle  = 1 << 0
	flagNoZeroes       = 1 << 1
	clientFlagNoZeroes = 1 << 1

	optExportName = 1
	optAbort      = 2
	optInfo       = 6
	optGo         = 7

	repAck      = 1
	repInfo     = 3
	repErrUnsup = 1<<31 + 1

	infoExport = 0

	transHasFlags = 1 << 0
	transReadOnly = 1 << 1

	cmdRead  = 0
	cmdWrite = 1
	cmdDisc  = 2

	errPerm  = 1
	errIO    = 5
	errInval = 22

	maxOptionLen  = 64 << 10
	maxReadLen    = 32 << 20
	maxConcurrent = 8
	// sockBuf lets a whole reply sit in the socket, so qemu-img drains it
	// in few reads instead of waking up every 200 KiB.
	sockBuf = 4 << 20
)

// Server exports one read-only image.
type Server struct {
	Data io.ReaderAt
	Size int64
	Log  logr.Logger

	mu       sync.Mutex
	firstErr error
}

// Err returns the first read error served to a client: qemu-img only
// reports "Input/output error", this says what really failed.
func (s *Server) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.firstErr
}

// Serve accepts connections until ctx is done.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	go func() {
		<-ctx.Done()
		l.Close()
	}()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		conn, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("nbd accept: %w", err)
		}
		if uc, ok := conn.(*net.UnixConn); ok {
			_ = uc.SetWriteBuffer(sockBuf)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer conn.Close()
			stop := context.AfterFunc(ctx, func() { conn.Close() })
			defer stop()
			if err := s.serveConn(conn); err != nil && ctx.Err() == nil {
				s.Log.V(1).Info("nbd connection ended", "error", err.Error())
			}
		}()
	}
}

func (s *Server) serveConn(conn net.Conn) error {
	r := bufio.NewReader(conn)
	noZeroes, err := s.handshake(r, conn)
	if err != nil || noZeroes == nil {
		return err
	}
	return s.transmit(r, conn)
}

// handshake negotiates until transmission starts. It returns nil, nil when
// the client aborted.
func (s *Server) handshake(r *bufio.Reader, w io.Writer) (*bool, error) {
	hello := binary.BigEndian.AppendUint64(nil, nbdMagic)
	hello = binary.BigEndian.AppendUint64(hello, optMagic)
	hello = binary.BigEndian.AppendUint16(hello, flagFixedNewstyle|flagNoZeroes)
	if _, err := w.Write(hello); err != nil {
		return nil, err
	}
	var clientFlags uint32
	if err := binary.Read(r, binary.BigEndian, &clientFlags); err != nil {
		return nil, fmt.Errorf("reading client flags: %w", err)
	}
	noZeroes := clientFlags&clientFlagNoZeroes != 0
	for {
		var hdr struct {
			Magic  uint64
			Option uint32
			Length uint32
		}
		if err := binary.Read(r, binary.BigEndian, &hdr); err != nil {
			return nil, fmt.Errorf("reading option: %w", err)
		}
		if hdr.Magic != optMagic || hdr.Length > maxOptionLen {
			return nil, errors.New("malformed option")
		}
		if _, err := r.Discard(int(hdr.Length)); err != nil { // export names are ignored: there is one
			return nil, err
		}
		switch hdr.Option {
		case optExportName:
			reply := binary.BigEndian.AppendUint64(nil, uint64(s.Size))
			reply = binary.BigEndian.AppendUint16(reply, transHasFlags|transReadOnly)
			if !noZeroes {
				reply = append(reply, make([]byte, 124)...)
			}
			_, err := w.Write(reply)
			return &noZeroes, err
		case optInfo, optGo:
			info := binary.BigEndian.AppendUint16(nil, infoExport)
			info = binary.BigEndian.AppendUint64(info, uint64(s.Size))
			info = binary.BigEndian.AppendUint16(info, transHasFlags|transReadOnly)
			if err := optReply(w, hdr.Option, repInfo, info); err != nil {
				return nil, err
			}
			if err := optReply(w, hdr.Option, repAck, nil); err != nil {
				return nil, err
			}
			if hdr.Option == optGo {
				return &noZeroes, nil
			}
		case optAbort:
			_ = optReply(w, hdr.Option, repAck, nil)
			return nil, nil
		default:
			if err := optReply(w, hdr.Option, repErrUnsup, nil); err != nil {
				return nil, err
			}
		}
	}
}

func optReply(w io.Writer, option, typ uint32, data []byte) error {
	b := binary.BigEndian.AppendUint64(nil, replyMagic)
	b = binary.BigEndian.AppendUint32(b, option)
	b = binary.BigEndian.AppendUint32(b, typ)
	b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
	_, err := w.Write(append(b, data...))
	return err
}

type request struct {
	Magic  uint32
	Flags  uint16
	Type   uint16
	Handle uint64
	Offset uint64
	Length uint32
}

func (s *Server) transmit(r *bufio.Reader, conn net.Conn) error {
	var writeMu sync.Mutex
	var inflight sync.WaitGroup
	defer inflight.Wait()
	sem := make(chan struct{}, maxConcurrent)
	// Reply buffers are reused: a fresh one per read would fault in every
	// page of every read (a 2 MiB read is 512 page faults), which costs
	// more than the copy on the VMs measured.
	var buffers sync.Pool
	reply := func(b []byte) {
		writeMu.Lock()
		defer writeMu.Unlock()
		_, _ = conn.Write(b)
	}
	for {
		var req request
		if err := binary.Read(r, binary.BigEndian, &req); err != nil {
			return fmt.Errorf("reading request: %w", err)
		}
		if req.Magic != requestMagic {
			return errors.New("malformed request")
		}
		switch req.Type {
		case cmdDisc:
			return nil
		case cmdRead:
			if req.Length > maxReadLen || req.Offset+uint64(req.Length) > uint64(s.Size) {
				reply(replyHeader(nil, errInval, req.Handle))
				continue
			}
			sem <- struct{}{}
			inflight.Add(1)
			go func() {
				defer inflight.Done()
				defer func() { <-sem }()
				need := 16 + int(req.Length)
				buf, _ := buffers.Get().([]byte)
				if cap(buf) < need {
					buf = make([]byte, need)
				}
				buf = buf[:need]
				defer buffers.Put(buf)
				if _, err := s.Data.ReadAt(buf[16:], int64(req.Offset)); err != nil && !errors.Is(err, io.EOF) {
					s.recordErr(err)
					reply(replyHeader(buf[:0], errIO, req.Handle))
					return
				}
				replyHeader(buf[:0], 0, req.Handle)
				reply(buf)
			}()
		case cmdWrite:
			if _, err := r.Discard(int(req.Length)); err != nil {
				return err
			}
			reply(replyHeader(nil, errPerm, req.Handle))
		default:
			reply(replyHeader(nil, errInval, req.Handle))
		}
	}
}

func replyHeader(b []byte, errno uint32, handle uint64) []byte {
	b = binary.BigEndian.AppendUint32(b, simpleReplyMagic)
	b = binary.BigEndian.AppendUint32(b, errno)
	return binary.BigEndian.AppendUint64(b, handle)
}

func (s *Server) recordErr(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.firstErr == nil {
		s.firstErr = err
	}
}
