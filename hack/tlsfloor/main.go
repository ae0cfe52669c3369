// Command tlsfloor is the benchmark's floor for a clone over mutual TLS:
// two fresh processes move the same number of bytes over TLS 1.3 on
// loopback, from memory to memory. Nothing is read from or written to a
// disk, hashed or framed, so no clone between two processes on this
// machine can take less time. hack/bench-cloner.sh runs it with the
// certificates datavolume-cloner gen-certs makes.
//
//	tlsfloor recv --listen ADDR --certs DIR
//	tlsfloor send --address ADDR --certs DIR --bytes N
package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

const chunk = 1 << 20

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: tlsfloor recv|send [flags]")
		os.Exit(2)
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	addr := fs.String("listen", "127.0.0.1:0", "recv: address to listen on")
	target := fs.String("address", "", "send: address to send to")
	certs := fs.String("certs", "", "directory of ca.crt, server.crt/key and client.crt/key")
	n := fs.Int64("bytes", 0, "send: bytes to send")
	_ = fs.Parse(os.Args[2:])
	var err error
	switch os.Args[1] {
	case "recv":
		err = recv(*addr, *certs)
	case "send":
		err = send(*target, *certs, *n)
	default:
		err = fmt.Errorf("unknown mode %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "tlsfloor:", err)
		os.Exit(1)
	}
}

func config(dir, side string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, side+".crt"), filepath.Join(dir, side+".key"))
	if err != nil {
		return nil, err
	}
	ca, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, errors.New("no certificate in ca.crt")
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		RootCAs:      pool,
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS13,
	}, nil
}

// recv accepts one connection and reads it to the end.
func recv(addr, certs string) error {
	c, err := config(certs, "server")
	if err != nil {
		return err
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	defer l.Close()
	raw, err := l.Accept()
	if err != nil {
		return err
	}
	conn := tls.Server(raw, c)
	defer conn.Close()
	got, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{conn}, make([]byte, chunk))
	if err != nil {
		return fmt.Errorf("after %d bytes: %w", got, err)
	}
	return nil
}

// send connects, retrying while nothing listens yet (both processes start
// together, as clone-source and clone-target do), and sends n bytes.
func send(addr, certs string, n int64) error {
	c, err := config(certs, "client")
	if err != nil {
		return err
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	c.ServerName = host
	deadline := time.Now().Add(10 * time.Second)
	var raw net.Conn
	for {
		raw, err = net.Dial("tcp", addr)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.ECONNREFUSED) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(2 * time.Millisecond)
	}
	conn := tls.Client(raw, c)
	buf := make([]byte, chunk)
	for i := range buf {
		buf[i] = byte(i*131 + i>>9) // not zeros, not that it matters to AES-GCM
	}
	for sent := int64(0); sent < n; {
		w, err := conn.Write(buf[:min(int64(len(buf)), n-sent)])
		if err != nil {
			return fmt.Errorf("after %d bytes: %w", sent, err)
		}
		sent += int64(w)
	}
	return conn.Close()
}
