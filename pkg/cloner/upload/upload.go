// Package upload receives an image over HTTPS and imports it like any
// other source: the request body goes through the same pipeline.
//
// Endpoints:
//
//	POST|PUT /v1beta1/upload   (also /v1alpha1/upload) body: the image, any supported format
//	GET      /healthz
//
// One upload runs at a time (another gets 503). A failed upload can be
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
	"sync"
	"time"

	"github.com/datavolume/datavolume/pkg/cloner/archive"
	"github.com/datavolume/datavolume/pkg/cloner/importer"
	"github.com/datavolume/datavolume/pkg/cloner/sink"
)

// Server imports the first successful upload.
type Server struct {
	opts     importer.Options
	busy     sync.Mutex
	doneOnce sync.Once
	done     chan struct{}
	mux      *http.ServeMux
}

// New returns a server that imports uploads with the given options.
func New(o importer.Options) *Server {
	s := &Server{opts: o, done: make(chan struct{}), mux: http.NewServeMux()}
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
	err := importer.Import(r.Context(), &body{ReadCloser: r.Body, size: r.ContentLength}, s.opts)
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

// Serve serves HTTPS on l until an upload has been imported (then it
// returns nil, after the response went out) or ctx is done.
func Serve(ctx context.Context, l net.Listener, tlsConfig *tls.Config, s *Server) error {
	srv := &http.Server{
		Handler:           s,
		TLSConfig:         tlsConfig,
		ReadHeaderTimeout: 30 * time.Second,
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
