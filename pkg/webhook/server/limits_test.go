package server

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"gotest.tools/v3/assert"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/datavolume/datavolume/pkg/webhook"
	"github.com/datavolume/datavolume/pkg/webhook/internal/endpointstest"
)

// limitedServer is the webhook's HTTPS server, as Run builds it, on a
// loopback port, over listers (no cluster).
type limitedServer struct {
	address string
	roots   *x509.CertPool
	client  *http.Client
}

func startLimitedServer(t *testing.T, options Options) *limitedServer {
	t.Helper()
	certFile, keyFile, certPEM := writeCertificate(t, t.TempDir(), "127.0.0.1")
	certificate, err := newServingCertificate(certFile, keyFile)
	assert.NilError(t, err)
	config := &Config{options: options, certificate: certificate}

	listener, err := net.Listen("tcp", "127.0.0.1:0")
	assert.NilError(t, err)
	ctx, cancel := context.WithCancel(logrContext(t))
	stopped := make(chan error, 1)
	go func() {
		stopped <- config.serve(ctx, logr.FromContextOrDiscard(ctx), listener, config.routes(endpointstest.Dependencies(t, func() bool { return true })))
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-stopped:
			assert.Check(t, err)
		case <-time.After(15 * time.Second):
			t.Error("serve did not return after its context was cancelled")
		}
	})

	roots := x509.NewCertPool()
	assert.Assert(t, roots.AppendCertsFromPEM(certPEM))
	return &limitedServer{
		address: listener.Addr().String(),
		roots:   roots,
		client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		}},
	}
}

// dial opens a TLS connection speaking HTTP/1.1, as a slow client would.
func (s *limitedServer) dial(t *testing.T) *tls.Conn {
	t.Helper()
	conn, err := tls.Dial("tcp", s.address, &tls.Config{RootCAs: s.roots, MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}})
	assert.NilError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// post sends a whole review the way kube-apiserver does.
func (s *limitedServer) post(t *testing.T, path string, body []byte) (*http.Response, []byte) {
	t.Helper()
	resp, err := s.client.Post("https://"+s.address+path, "application/json", bytes.NewReader(body))
	assert.NilError(t, err)
	defer resp.Body.Close()
	answer, err := io.ReadAll(resp.Body)
	assert.NilError(t, err)
	return resp, answer
}

// requestHead is the start of a review POST of length bytes.
func requestHead(path string, length int) string {
	return fmt.Sprintf("POST %s HTTP/1.1\r\nHost: datavolume-webhook\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", path, length)
}

// dribble writes data a byte at a time every interval until it is all
// written or the connection fails, then reports the error (nil: all sent).
func dribble(conn net.Conn, data string, interval time.Duration) <-chan error {
	done := make(chan error, 1)
	go func() {
		for i := range len(data) {
			if _, err := conn.Write([]byte{data[i]}); err != nil {
				done <- err
				return
			}
			time.Sleep(interval)
		}
		done <- nil
	}()
	return done
}

// waitForEnd reads conn until the server ends the exchange (closes the
// connection) and returns what it sent and when it ended. The client gives
// up after limit: a server that waits that long has not cut it off.
func waitForEnd(t *testing.T, conn net.Conn, limit time.Duration) (string, time.Time) {
	t.Helper()
	assert.NilError(t, conn.SetReadDeadline(time.Now().Add(limit)))
	answer, err := io.ReadAll(conn)
	var netErr net.Error
	if err != nil && (!errors.As(err, &netErr) || netErr.Timeout()) {
		t.Fatalf("the server did not end the connection within %s: %v (answer so far %q)", limit, err, answer)
	}
	return string(answer), time.Now()
}

func testLimits() Options {
	o := *NewOptions()
	o.ReadHeaderTimeout = 300 * time.Millisecond
	o.ReadTimeout = 600 * time.Millisecond
	o.WriteTimeout = 5 * time.Second
	o.IdleTimeout = 5 * time.Second
	return o
}

// A client that sends its headers byte by byte, or its body never or byte
// by byte (slowloris), is cut off once its time is up, not held open.
func TestSlowClientsAreCutOff(t *testing.T) {
	options := testLimits()
	server := startLimitedServer(t, options)
	review := string(endpointstest.DataVolumeReview(t))
	head := requestHead(webhook.MutateDataVolumesPath, len(review))

	tests := []struct {
		name string
		// send writes to the connection, returning once it has started.
		send func(conn net.Conn) <-chan error
		// limit is when the server must have cut the client off.
		limit time.Duration
	}{{
		name:  "headers byte by byte",
		send:  func(conn net.Conn) <-chan error { return dribble(conn, head, 20*time.Millisecond) },
		limit: options.ReadHeaderTimeout,
	}, {
		name: "a body that never comes",
		send: func(conn net.Conn) <-chan error {
			_, err := io.WriteString(conn, head+review[:len(review)/2])
			done := make(chan error, 1)
			done <- err
			return done
		},
		limit: options.ReadTimeout,
	}, {
		name: "a body byte by byte",
		send: func(conn net.Conn) <-chan error {
			if _, err := io.WriteString(conn, head); err != nil {
				done := make(chan error, 1)
				done <- err
				return done
			}
			return dribble(conn, review, 20*time.Millisecond)
		},
		limit: options.ReadTimeout,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn := server.dial(t)
			start := time.Now()
			sent := tt.send(conn)
			answer, end := waitForEnd(t, conn, tt.limit+3*time.Second)
			elapsed := end.Sub(start)
			assert.Assert(t, elapsed < tt.limit+time.Second, "cut off after %s, limit %s", elapsed, tt.limit)
			assert.Assert(t, elapsed >= tt.limit-100*time.Millisecond, "cut off after %s, before its time %s", elapsed, tt.limit)
			// Whatever the server answered, it was not an admission.
			assert.Assert(t, !strings.Contains(answer, `"allowed":true`), "answer: %q", answer)
			_ = conn.Close()
			<-sent
		})
	}

	t.Run("a prompt client is still served", func(t *testing.T) {
		resp, answer := server.post(t, webhook.MutateDataVolumesPath, []byte(review))
		assert.Equal(t, resp.StatusCode, http.StatusOK, string(answer))
	})
}

// With a bound of N, N slow requests fill it: one more is refused promptly
// with 429 and Retry-After (kube-apiserver retries it), health checks are
// still answered, and once the slow ones end a request is served again.
func TestRequestsInFlightAreBounded(t *testing.T) {
	const bound = 2
	options := testLimits()
	options.ReadTimeout, options.WriteTimeout = 10*time.Second, 10*time.Second // the slow requests hold their slots
	options.MaxRequestsInFlight = bound
	options.MaxRequestsInFlightWait = 200 * time.Millisecond
	server := startLimitedServer(t, options)
	review := endpointstest.DataVolumeReview(t)
	head := requestHead(webhook.MutateDataVolumesPath, len(review))

	// N slow requests: headers and half a body, then nothing for now.
	slow := make([]*tls.Conn, bound)
	for i := range slow {
		slow[i] = server.dial(t)
		_, err := io.WriteString(slow[i], head+string(review[:len(review)/2]))
		assert.NilError(t, err)
	}

	// One more: refused once the slow ones hold every slot (they are in
	// the server a moment after they were sent).
	var refused *http.Response
	var refusedBody []byte
	var waited time.Duration
	deadline := time.Now().Add(5 * time.Second)
	for refused == nil {
		assert.Assert(t, time.Now().Before(deadline), "no request was refused with %d slow ones in flight", bound)
		start := time.Now()
		resp, answer := server.post(t, webhook.MutateDataVolumesPath, review)
		if resp.StatusCode == http.StatusTooManyRequests {
			refused, refusedBody, waited = resp, answer, time.Since(start)
			break
		}
		assert.Equal(t, resp.StatusCode, http.StatusOK, string(answer))
		time.Sleep(20 * time.Millisecond)
	}
	assert.Assert(t, waited >= options.MaxRequestsInFlightWait, "refused after %s, before waiting %s for a slot", waited, options.MaxRequestsInFlightWait)
	assert.Assert(t, waited < options.MaxRequestsInFlightWait+time.Second, "refused after %s: not promptly", waited)
	assert.Equal(t, refused.Header.Get("Retry-After"), "1")
	var status metav1.Status
	assert.NilError(t, json.Unmarshal(refusedBody, &status), string(refusedBody))
	assert.Equal(t, status.Kind, "Status")
	assert.Equal(t, status.Code, int32(http.StatusTooManyRequests))
	assert.Equal(t, status.Reason, metav1.StatusReasonTooManyRequests)
	assert.Assert(t, status.Details != nil && status.Details.RetryAfterSeconds == 1, "%+v", status.Details)

	t.Run("health checks are not counted", func(t *testing.T) {
		for _, path := range []string{"/healthz", "/readyz"} {
			resp, err := server.client.Get("https://" + server.address + path)
			assert.NilError(t, err)
			_ = resp.Body.Close()
			assert.Equal(t, resp.StatusCode, http.StatusOK, path)
		}
	})

	// The slow requests finish their bodies and are answered.
	for _, conn := range slow {
		_, err := io.WriteString(conn, string(review[len(review)/2:]))
		assert.NilError(t, err)
		assert.NilError(t, conn.SetReadDeadline(time.Now().Add(5*time.Second)))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		assert.NilError(t, err)
		_ = resp.Body.Close()
		assert.Equal(t, resp.StatusCode, http.StatusOK)
		_ = conn.Close()
	}

	resp, answer := server.post(t, webhook.MutateDataVolumesPath, review)
	assert.Equal(t, resp.StatusCode, http.StatusOK, string(answer))
}

func TestHTTPServerTakesTheOptionsLimits(t *testing.T) {
	options := *NewOptions()
	options.ReadHeaderTimeout, options.ReadTimeout, options.WriteTimeout, options.IdleTimeout = 1*time.Second, 2*time.Second, 3*time.Second, 4*time.Second
	server := (&Config{options: options}).newHTTPServer(http.NotFoundHandler())
	assert.Equal(t, server.ReadHeaderTimeout, time.Second)
	assert.Equal(t, server.ReadTimeout, 2*time.Second)
	assert.Equal(t, server.WriteTimeout, 3*time.Second)
	assert.Equal(t, server.IdleTimeout, 4*time.Second)
}
