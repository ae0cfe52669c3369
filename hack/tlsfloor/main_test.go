package main

import (
	"net"
	"testing"
	"time"

	"gotest.tools/v3/assert"

	"github.com/datavolume/datavolume/pkg/cloner/certs"
)

// The floor moves exactly the bytes asked for, over mutual TLS with the
// cloner's certificates, and a client without a certificate the CA signed
// gets nothing through.
func TestFloorMovesTheBytesOverMutualTLS(t *testing.T) {
	f, err := certs.Generate(t.TempDir(), []string{"127.0.0.1"}, time.Hour)
	assert.NilError(t, err)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	assert.NilError(t, err)
	defer l.Close()

	type result struct {
		n   int64
		err error
	}
	got := make(chan result, 1)
	go func() {
		n, err := recv(l, f)
		got <- result{n, err}
	}()
	const n = 5<<20 + 123 // not a whole number of chunks
	assert.NilError(t, send(l.Addr().String(), f, n))
	r := <-got
	assert.NilError(t, r.err)
	assert.Equal(t, r.n, int64(n))

	other, err := certs.Generate(t.TempDir(), []string{"127.0.0.1"}, time.Hour)
	assert.NilError(t, err)
	go func() {
		n, err := recv(l, f)
		got <- result{n, err}
	}()
	stranger := f
	stranger.ClientCert, stranger.ClientKey = other.ClientCert, other.ClientKey
	_ = send(l.Addr().String(), stranger, 1<<20) // may fail on either side first
	r = <-got
	assert.ErrorContains(t, r.err, "certificate")
	assert.Equal(t, r.n, int64(0))
}
