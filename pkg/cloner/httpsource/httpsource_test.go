package httpsource_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
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

// rawResponse takes over the connection, writes head (the status line
// and headers, without the blank line) and body as they are, and closes.
func rawResponse(w http.ResponseWriter, head string, body []byte) {
	conn, buf, err := w.(http.Hijacker).Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	_, _ = buf.WriteString(head + "\r\n\r\n")
	_, _ = buf.Write(body)
	_ = buf.Flush()
}

// chunked encodes b as one chunk, without the terminating chunk.
func chunked(b []byte) []byte {
	return append(fmt.Appendf(nil, "%x\r\n", len(b)), append(b, "\r\n"...)...)
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
			name: "body ended by closing the connection fails",
			handler: func(_ int32, w http.ResponseWriter, r *http.Request) {
				rawResponse(w, "HTTP/1.1 200 OK\r\nConnection: close", payload[:1<<20])
			},
			wantErr: "at byte 1048576: the server closed the connection without Content-Length or chunked encoding",
		},
		{
			name: "body ended by closing the connection, whole, still fails",
			handler: func(_ int32, w http.ResponseWriter, r *http.Request) {
				rawResponse(w, "HTTP/1.1 200 OK\r\nConnection: close", payload)
			},
			wantErr: "cannot be known to be complete",
		},
		{
			name: "body ended by closing the connection is accepted when a checksum will tell",
			handler: func(_ int32, w http.ResponseWriter, r *http.Request) {
				rawResponse(w, "HTTP/1.1 200 OK\r\nConnection: close", payload)
			},
			opts: httpsource.Options{AcceptUnframed: true},
		},
		{
			name: "chunked body cut before its terminator fails",
			handler: func(_ int32, w http.ResponseWriter, r *http.Request) {
				rawResponse(w, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked", chunked(payload[:1<<20]))
			},
			wantErr: "at byte 1048576: unexpected EOF",
		},
		{
			name: "chunked body with its terminator succeeds",
			handler: func(_ int32, w http.ResponseWriter, r *http.Request) {
				rawResponse(w, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked", append(chunked(payload), "0\r\n\r\n"...))
			},
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

// TestExtraHeaders: the headers go with every request, the first, the
// resumed one and each range read, and their values are never logged.
func TestExtraHeaders(t *testing.T) {
	var calls atomic.Int32
	var missing atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := calls.Add(1)
		if r.Header.Get("X-Token") != "t0ken-Value-123" || r.Header.Get("Authorization") != "Bearer b3arer-Value-456" ||
			r.Header.Values("X-Multi")[1] != "two" {
			missing.Store(fmt.Sprintf("request %d (Range %q) lacks the headers: %v", n, r.Header.Get("Range"), r.Header))
			http.Error(w, "no token", http.StatusForbidden)
			return
		}
		if n == 1 {
			cutAfter(1<<20, w, r, true)
			return
		}
		serveFile(w, r)
	}))
	defer srv.Close()
	header := http.Header{}
	for _, line := range []string{"X-Token: t0ken-Value-123", "authorization:Bearer b3arer-Value-456", "X-Multi: one", "X-Multi: two"} {
		name, value, err := httpsource.ParseHeaderLine(line)
		assert.NilError(t, err)
		header.Add(name, value)
	}
	log, captured := testenv.NewLogger()
	src, err := httpsource.New(httpsource.Options{URL: srv.URL + "/disk.img", Header: header, Username: "u", Password: "basic-Pass",
		RetryWait: 5 * time.Millisecond, Log: log})
	assert.NilError(t, err)
	st, err := src.Open(context.Background())
	assert.NilError(t, err)
	defer st.Close()
	got, err := io.ReadAll(st)
	assert.NilError(t, err, "%v", missing.Load())
	assert.Assert(t, bytes.Equal(got, payload))
	ra, ok := st.ReaderAt()
	assert.Assert(t, ok)
	_, err = ra.ReadAt(make([]byte, 100), 1000)
	assert.NilError(t, err, "%v", missing.Load())
	assert.Equal(t, calls.Load(), int32(3), "first request, resume, range read")
	assert.Assert(t, strings.Contains(captured.String(), "retrying download"), "the resume was logged:\n%s", captured)
	for _, secret := range []string{"t0ken-Value-123", "b3arer-Value-456", "basic-Pass"} {
		assert.Assert(t, !strings.Contains(captured.String(), secret), "%s in logs:\n%s", secret, captured)
	}
}

func TestParseHeaderLine(t *testing.T) {
	for _, tc := range []struct {
		line, name, value, wantErr string
	}{
		{line: "X-Token: abc", name: "X-Token", value: "abc"},
		{line: "  x-api-key :  k:e:y  ", name: "X-Api-Key", value: "k:e:y"},
		{line: "Authorization: Bearer a.b.c", name: "Authorization", value: "Bearer a.b.c"},
		{line: "X-Empty:", name: "X-Empty", value: ""},
		{line: "no colon here", wantErr: `not a header line "Name: value"`},
		{line: ": s3cr3t", wantErr: `not a header line`},
		{line: "Bad Name: v", wantErr: `header name "Bad Name"`},
		{line: "X-Evil: a\r\nHost: b", wantErr: "control character"},
		{line: "Range: bytes=0-", wantErr: "header Range is set by the download itself"},
		{line: "host: example.com", wantErr: "header Host is set by the download itself"},
	} {
		name, value, err := httpsource.ParseHeaderLine(tc.line)
		if tc.wantErr != "" {
			assert.ErrorContains(t, err, tc.wantErr)
			_, v, _ := strings.Cut(tc.line, ":")
			if v = strings.TrimSpace(v); len(v) > 3 {
				assert.Assert(t, !strings.Contains(err.Error(), v), "the value is quoted: %v", err)
			}
			continue
		}
		assert.NilError(t, err)
		assert.Equal(t, name, tc.name)
		assert.Equal(t, value, tc.value)
	}
}

// TestErrorsNameHostNotSecrets: failures name the server and the status,
// never the query string (a signed URL's signature) nor credentials.
func TestErrorsNameHostNotSecrets(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/moved" {
			http.Redirect(w, r, "/gone?sig=redirect-Secret", http.StatusFound)
			return
		}
		http.NotFound(w, r)
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	refused := "http://127.0.0.1:1"
	for _, tc := range []struct {
		url, wantErr string
		wantCode     int
	}{
		{url: "http://user:url-Pass@" + host + "/disk.img?X-Amz-Signature=query-Secret#frag",
			wantErr: "downloading " + srv.URL + "/disk.img: HTTP 404 Not Found", wantCode: 404},
		{url: srv.URL + "/moved?token=query-Secret",
			wantErr: "downloading " + srv.URL + "/moved: HTTP 404 Not Found from " + srv.URL + "/gone (redirected)", wantCode: 404},
		{url: refused + "/disk.img?token=query-Secret", wantErr: `downloading http://127.0.0.1:1/disk.img: giving up after 1 retries: Get "http://127.0.0.1:1/disk.img": dial tcp 127.0.0.1:1: connect: connection refused`},
	} {
		_, err := download(t, tc.url, httpsource.Options{Retries: 1})
		assert.Error(t, err, tc.wantErr)
		var se *httpsource.StatusError
		assert.Equal(t, errors.As(err, &se), tc.wantCode != 0)
		if se != nil {
			assert.Equal(t, se.Code, tc.wantCode)
		}
		for _, secret := range []string{"url-Pass", "query-Secret", "redirect-Secret", "frag"} {
			assert.Assert(t, !strings.Contains(err.Error(), secret), "%s in %v", secret, err)
		}
	}
}

// TestRedirectRules: at most five redirects by default, never from https
// to http, and credentials (basic auth, an Authorization header, every
// extra header, which may come from a Secret) go to the source's host
// only, not to a host a redirect names.
func TestRedirectRules(t *testing.T) {
	header := http.Header{"Authorization": {"Bearer b3arer-Value"}, "X-Token": {"t0ken-Value"}}
	seen := func(r *http.Request) string {
		user, pass, _ := r.BasicAuth()
		return fmt.Sprintf("auth=%q user=%q pass=%q x-token=%q", r.Header.Get("Authorization"), user, pass, r.Header.Get("X-Token"))
	}

	t.Run("at most five by default", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			var n int
			_, _ = fmt.Sscanf(r.URL.Path, "/hop%d", &n)
			if n > 0 {
				http.Redirect(w, r, fmt.Sprintf("/hop%d", n-1), http.StatusFound)
				return
			}
			serveFile(w, r)
		}))
		defer srv.Close()
		got, err := download(t, srv.URL+"/hop5", httpsource.Options{})
		assert.NilError(t, err)
		assert.Assert(t, bytes.Equal(got, payload))
		_, err = download(t, srv.URL+"/hop6", httpsource.Options{})
		assert.ErrorIs(t, err, httpsource.ErrTooManyRedirects)
		assert.ErrorContains(t, err, "stopped after 5")
	})

	t.Run("never from https to http", func(t *testing.T) {
		var plainCalls atomic.Int32
		plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			plainCalls.Add(1)
			serveFile(w, r)
		}))
		defer plain.Close()
		tlsSrv := testenv.FileServer(t, t.TempDir(), func(http.Handler) http.Handler {
			return http.RedirectHandler(plain.URL+"/disk.img", http.StatusFound)
		})
		_, err := download(t, tlsSrv.URL+"/disk.img", httpsource.Options{CAFile: tlsSrv.CAFile, Username: tlsSrv.Username, Password: tlsSrv.Password})
		assert.ErrorIs(t, err, httpsource.ErrInsecureRedirect)
		assert.ErrorContains(t, err, "redirect from https to http")
		assert.Equal(t, plainCalls.Load(), int32(0), "the http server was never asked")
	})

	t.Run("credentials stay with the source host", func(t *testing.T) {
		var other atomic.Value
		otherSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			other.Store(seen(r))
			serveFile(w, r)
		}))
		defer otherSrv.Close()
		var source []string
		var mu sync.Mutex
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			source = append(source, r.URL.Path+" "+seen(r))
			mu.Unlock()
			switch r.URL.Path {
			case "/disk.img": // to the same host first, then away
				http.Redirect(w, r, "/moved", http.StatusFound)
			case "/moved":
				// 127.0.0.1 on another port: another server.
				http.Redirect(w, r, otherSrv.URL+"/disk.img", http.StatusFound)
			}
		}))
		defer srv.Close()
		got, err := download(t, srv.URL+"/disk.img", httpsource.Options{Username: "u", Password: "basic-Pass", Header: header})
		assert.NilError(t, err)
		assert.Assert(t, bytes.Equal(got, payload))
		want := `auth="Bearer b3arer-Value" user="" pass="" x-token="t0ken-Value"`
		assert.DeepEqual(t, source, []string{"/disk.img " + want, "/moved " + want})
		assert.Equal(t, other.Load(), `auth="" user="" pass="" x-token=""`)

		// Basic auth alone (no Authorization header given).
		_, err = download(t, srv.URL+"/disk.img", httpsource.Options{Username: "u", Password: "basic-Pass"})
		assert.NilError(t, err)
		assert.Equal(t, other.Load(), `auth="" user="" pass="" x-token=""`)
	})
}
