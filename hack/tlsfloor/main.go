// Command tlsfloor is the benchmark's floor for a clone over mutual TLS:
// two fresh processes move the same number of bytes over TLS 1.3 on
// loopback, from memory to memory, with the TLS settings of
// datavolume-cloner (pkg/cloner/certs). Nothing is read from or written to
// a disk, hashed or framed, so no clone between two processes on the same
// machine takes less time. hack/bench-cloner.sh runs it with the
// certificates `datavolume-cloner gen-certs` makes.
//
//	tlsfloor recv --listen ADDR --certs DIR
//	tlsfloor send --address ADDR --certs DIR --bytes N
package main

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/datavolume/datavolume/pkg/cloner/certs"
)

const chunk = 1 << 20

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: tlsfloor recv|send [flags]")
		os.Exit(2)
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:0", "recv: address to listen on")
	address := fs.String("address", "", "send: address to send to")
	dir := fs.String("certs", "", "directory of the certificates datavolume-cloner gen-certs writes")
	n := fs.Int64("bytes", 0, "send: bytes to send")
	_ = fs.Parse(os.Args[2:])
	var err error
	switch os.Args[1] {
	case "recv":
		var l net.Listener
		if l, err = net.Listen("tcp", *listen); err == nil {
			_, err = recv(l, certs.InDir(*dir))
			l.Close()
		}
	case "send":
		err = send(*address, certs.InDir(*dir), *n)
	default:
		err = fmt.Errorf("unknown mode %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "tlsfloor:", err)
		os.Exit(1)
	}
}

// recv accepts one connection, reads it to the end and returns how many
// bytes came.
func recv(l net.Listener, f certs.Files) (int64, error) {
	config, err := certs.ServerConfig(f.ServerCert, f.ServerKey, f.CA)
	if err != nil {
		return 0, err
	}
	raw, err := l.Accept()
	if err != nil {
		return 0, err
	}
	conn := tls.Server(raw, config)
	defer conn.Close()
	got, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{conn}, make([]byte, chunk))
	if err != nil {
		return got, fmt.Errorf("after %d bytes: %w", got, err)
	}
	return got, nil
}

// send connects, retrying while nothing listens yet (both processes start
// together, as clone-source and clone-target do), and sends n bytes.
func send(address string, f certs.Files, n int64) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return err
	}
	config, err := certs.ClientConfig(f.ClientCert, f.ClientKey, f.CA, host)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(10 * time.Second)
	var raw net.Conn
	for {
		raw, err = net.Dial("tcp", address)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.ECONNREFUSED) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(2 * time.Millisecond)
	}
	conn := tls.Client(raw, config)
	buf := make([]byte, chunk)
	for i := range buf {
		buf[i] = byte(i*131 + i>>9)
	}
	for sent := int64(0); sent < n; {
		w, err := conn.Write(buf[:min(int64(len(buf)), n-sent)])
		sent += int64(w)
		if err != nil {
			return fmt.Errorf("after %d bytes: %w", sent, err)
		}
	}
	return conn.Close()
}
