package httpsource_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"gotest.tools/v3/assert"

	"github.com/datavolume/datavolume/pkg/cloner/httpsource"
	"github.com/datavolume/datavolume/pkg/cloner/internal/testenv"
)

var payload = func() []byte {
	b := make([]byte, 3<<20)
	for i := range b {
		b[i] = byte(i * 7 / 5)
	}
	return b
}()

// serveFile serves payload with Range support, through misbehave when set.
func serveFile(w http.ResponseWriter, r *http.Request) {
	http.ServeContent(w, r, "disk.img", time.Unix(1_700_000_000, 0), bytes.NewReader(payload))
}

// cutAfter sends n bytes of the response, then resets the connection.
func cutAfter(n int, w http.ResponseWriter, r *http.Request, ranges bool) {
	if !ranges || r.Header.Get("Range") == "" {
		w.Header().Set("Content-Length", fmt.Sprint(len(payload)))
		if ranges {
			w.Header().Set("Accept-Ranges", "bytes")
			w.Header().Set("Last-Modified", time.Unix(1_700_000_000, 0).UTC().Format(http.TimeFormat))
		}
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(payload[:n])
		w.(http.Flusher).Flush()
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
		return
	}
	serveFile(w, r)
}

func download(t *testing.T, url string, o httpsource.Options) ([]byte, error) {
	t.Helper()
	o.URL = url
	if o.RetryWait == 0 {
		o.RetryWait = 5 * time.Millisecond
	}
	if o.IdleTimeout == 0 {
		o.IdleTimeout = 2 * time.Second
	}
	src, err := httpsource.New(o)
	assert.NilError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := src.Open(ctx)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	return io.ReadAll(st)
}

func TestDownload(t *testing.T) {
	var calls atomic.Int32
	for _, tc := range []struct {
		name    string
		handler func(calls int32, w http.ResponseWriter, r *http.Request)
		opts    httpsource.Options
		wantErr string
	}{
		{name: "plain download", handler: func(_ int32, w http.ResponseWriter, r *http.Request) { serveFile(w, r) }},
		{
			name: "reset mid-transfer is resumed with Range",
			handler: func(n int32, w http.ResponseWriter, r *http.Request) {
				if n == 1 {
					cutAfter(1<<20, w, r, true)
					return
				}
				if r.Header.Get("Range") != "bytes=1048576-" {
					http.Error(w, "expected a resume at 1 MiB, got "+r.Header.Get("Range"), http.StatusBadRequest)
					return
				}
				serveFile(w, r)
			},
		},
		{
			name:    "reset without Range support fails",
			handler: func(_ int32, w http.ResponseWriter, r *http.Request) { cutAfter(1<<20, w, r, false) },
			wantErr: "cannot resume",
		},
		{
			name:    "404 fails at once",
			handler: func(_ int32, w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) },
			wantErr: "HTTP 404 Not Found",
		},
		{
			name:    "500 fails after retries",
			handler: func(_ int32, w http.ResponseWriter, r *http.Request) { http.Error(w, "boom", 500) },
			opts:    httpsource.Options{Retries: 2},
			wantErr: "giving up after 2 retries: HTTP 500 Internal Server Error",
		},
		{
			name: "503 then success",
			handler: func(n int32, w http.ResponseWriter, r *http.Request) {
				if n < 3 {
					http.Error(w, "busy", http.StatusServiceUnavailable)
					return
				}
				serveFile(w, r)
			},
		},
		{
			name: "slow server is abandoned",
			handler: func(_ int32, w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Length", fmt.Sprint(len(payload)))
				_, _ = w.Write(payload[:1000])
				w.(http.Flusher).Flush()
				select {
				case <-r.Context().Done():
				case <-time.After(10 * time.Second):
				}
			},
			opts:    httpsource.Options{IdleTimeout: 200 * time.Millisecond, Retries: 1},
			wantErr: "no data for 200ms",
		},
		{
			name: "redirects are followed",
			handler: func(_ int32, w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/final" {
					http.Redirect(w, r, "/final", http.StatusFound)
					return
				}
				serveFile(w, r)
			},
		},
		{
			name: "redirect loops are bounded",
			handler: func(_ int32, w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, r.URL.Path+"x", http.StatusFound)
			},
			opts:    httpsource.Options{MaxRedirects: 3},
			wantErr: "too many redirects: stopped after 3",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls.Store(0)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				tc.handler(calls.Add(1), w, r)
			}))
			defer srv.Close()
			got, err := download(t, srv.URL+"/disk.img", tc.opts)
			if tc.wantErr != "" {
				assert.ErrorContains(t, err, tc.wantErr)
				return
			}
			assert.NilError(t, err)
			assert.Assert(t, bytes.Equal(got, payload), "downloaded %d bytes that differ from the %d served", len(got), len(payload))
		})
	}
}

func TestDownloadTLSAndAuth(t *testing.T) {
	srv := testenv.FileServer(t, t.TempDir(), func(http.Handler) http.Handler { return http.HandlerFunc(serveFile) })
	log, captured := testenv.NewLogger()
	for _, tc := range []struct {
		name    string
		opts    httpsource.Options
		url     string
		wantErr string
	}{
		{name: "custom CA and basic auth", opts: httpsource.Options{CAFile: srv.CAFile, Username: srv.Username, Password: srv.Password}},
		{name: "credentials in the URL", opts: httpsource.Options{CAFile: srv.CAFile},
			url: strings.Replace(srv.URL, "https://", "https://"+srv.Username+":"+srv.Password+"@", 1)},
		{name: "wrong password", opts: httpsource.Options{CAFile: srv.CAFile, Username: srv.Username, Password: "wrong"},
			wantErr: "HTTP 401 Unauthorized: the credentials were refused"},
		{name: "untrusted certificate", opts: httpsource.Options{Username: srv.Username, Password: srv.Password},
			wantErr: "certificate signed by unknown authority"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url := tc.url
			if url == "" {
				url = srv.URL
			}
			tc.opts.Log = log
			got, err := download(t, url+"/disk.img", tc.opts)
			if tc.wantErr != "" {
				assert.ErrorContains(t, err, tc.wantErr)
				assert.Assert(t, !strings.Contains(err.Error(), srv.Password), "password in error: %v", err)
				return
			}
			assert.NilError(t, err)
			assert.Assert(t, bytes.Equal(got, payload))
		})
	}
	assert.Assert(t, !strings.Contains(captured.String(), srv.Password), "password in logs")
}

// TestReaderAt reads ranges the way qemu-img does through NBD.
func TestReaderAt(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(serveFile))
	defer srv.Close()
	src, err := httpsource.New(httpsource.Options{URL: srv.URL + "/disk.img"})
	assert.NilError(t, err)
	st, err := src.Open(context.Background())
	assert.NilError(t, err)
	defer st.Close()
	ra, ok := st.ReaderAt()
	assert.Assert(t, ok, "the server supports ranges")
	for _, r := range []struct{ off, n int64 }{{0, 512}, {1<<20 + 3, 65536}, {int64(len(payload)) - 10, 10}} {
		got := make([]byte, r.n)
		_, err := ra.ReadAt(got, r.off)
		assert.NilError(t, err)
		assert.Assert(t, cmp.Equal(got, payload[r.off:r.off+r.n]), "range %d+%d", r.off, r.n)
	}
}
