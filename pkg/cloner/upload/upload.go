// Package upload receives an image over HTTPS and imports it like any
// other source: the request body goes through the same pipeline.
//
// Endpoints:
//
//	POST|PUT /v1beta1/upload   (also /v1alpha1/upload) body: the image, any supported format
//	GET      /healthz
//
// Only clients with a certificate the configured CA signed are served. One
// upload runs at a time (another gets 503); one whose client sends nothing
// for the idle timeout fails and frees the slot. A failed upload can be
// retried; the server reports completion after the first success.
package upload

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/datavolume/datavolume/pkg/cloner/archive"
	"github.com/datavolume/datavolume/pkg/cloner/importer"
	"github.com/datavolume/datavolume/pkg/cloner/sink"
)

// Options configures the upload server.
type Options struct {
	// Import says what to import where.
	Import importer.Options
	// IdleTimeout ends an upload whose client sends nothing for this
	// long, so that it does not hold the one upload slot; default 60s.
	IdleTimeout time.Duration
}

// Server imports the first successful upload.
type Server struct {
	opts     importer.Options
	idle     time.Duration
	busy     sync.Mutex
	doneOnce sync.Once
	done     chan struct{}
	mux      *http.ServeMux
}

// New returns a server that imports uploads with the given options.
func New(o Options) *Server {
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = 60 * time.Second
	}
	s := &Server{opts: o.Import, idle: o.IdleTimeout, done: make(chan struct{}), mux: http.NewServeMux()}
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	for _, p := range []string{"/v1beta1/upload", "/v1alpha1/upload"} {
		s.mux.HandleFunc("POST "+p, s.upload)
		s.mux.HandleFunc("PUT "+p, s.upload)
	}
	return s
}

// Done is closed once an upload has been imported.
func (s *Server) Done() <-chan struct{} { return s.done }

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

type body struct {
	io.ReadCloser
	size int64
}

func (b *body) Size() int64 { return b.size }

func (s *Server) upload(w http.ResponseWriter, r *http.Request) {
	select {
	case <-s.done:
		http.Error(w, "an image has already been uploaded", http.StatusConflict)
		return
	default:
	}
	if !s.busy.TryLock() {
		http.Error(w, "an upload is in progress", http.StatusServiceUnavailable)
		return
	}
	defer s.busy.Unlock()
	s.opts.Log.Info("upload started", "remote", r.RemoteAddr, "contentLength", r.ContentLength)
	in := &idleBody{ReadCloser: r.Body, rc: http.NewResponseController(w), idle: s.idle}
	err := importer.Import(r.Context(), &body{ReadCloser: in, size: r.ContentLength}, s.opts)
	if err != nil {
		s.opts.Log.Error(err, "upload failed")
		code := http.StatusInternalServerError
		if errors.Is(err, sink.ErrTooLarge) || errors.Is(err, archive.ErrTooLarge) {
			code = http.StatusRequestEntityTooLarge
		}
		http.Error(w, err.Error(), code)
		return
	}
	s.opts.Log.Info("upload imported")
	_, _ = io.WriteString(w, "ok\n")
	s.doneOnce.Do(func() { close(s.done) })
}

// errStalled: the client sent nothing for the idle timeout.
var errStalled = errors.New("upload stalled")

// idleBody fails a read that waits longer than idle for the client: the
// connection's read deadline moves forward before every read.
type idleBody struct {
	io.ReadCloser
	rc   *http.ResponseController
	idle time.Duration
}

func (b *idleBody) Read(p []byte) (int, error) {
	if err := b.rc.SetReadDeadline(time.Now().Add(b.idle)); err != nil {
		return 0, fmt.Errorf("setting the upload's read deadline: %w", err)
	}
	n, err := b.ReadCloser.Read(p)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		err = fmt.Errorf("%w: the client sent nothing for %s", errStalled, b.idle)
	}
	return n, err
}

// ErrNoClientAuth: the TLS configuration does not require client
// certificates, so anyone who reaches the server could write the volume.
var ErrNoClientAuth = errors.New("the upload server requires client certificates (--client-ca)")

// Serve serves HTTPS on l until an upload has been imported (then it
// returns nil, after the response went out) or ctx is done. tlsConfig
// must require and verify client certificates.
func Serve(ctx context.Context, l net.Listener, tlsConfig *tls.Config, s *Server) error {
	if tlsConfig == nil || tlsConfig.ClientAuth != tls.RequireAndVerifyClientCert || tlsConfig.ClientCAs == nil {
		return ErrNoClientAuth
	}
	srv := &http.Server{
		Handler:           s,
		TLSConfig:         tlsConfig,
		ReadHeaderTimeout: 30 * time.Second,
		// Between requests; an upload's body has its own idle timeout.
		IdleTimeout: 2 * time.Minute,
	}
	served := make(chan error, 1)
	go func() { served <- srv.ServeTLS(l, "", "") }()
	var result error
	select {
	case <-s.done:
	case <-ctx.Done():
		result = ctx.Err()
	case err := <-served:
		return fmt.Errorf("serving uploads: %w", err)
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = srv.Shutdown(shutdownCtx)
	return result
}
