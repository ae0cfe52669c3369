// Package httpsource downloads an image over HTTP or HTTPS: custom CA,
// basic auth, extra request headers, a bounded number of redirects, connect
// and idle timeouts, and retries of transient failures that resume with a
// Range request where the server supports it. A download succeeds only
// when its end is known: Content-Length reached or the chunked terminator
// read (or, with Options.AcceptUnframed, a checksum to verify). It can also serve random
// reads through Range requests, which is how qcow2 images are converted
// without scratch space.
//
// URLs in logs and errors carry no credentials and no query string (a
// signed URL's signature is a credential); header values appear nowhere.
package httpsource

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/go-logr/logr"

	"github.com/datavolume/datavolume/pkg/cloner/certs"
)

// Options configures a download. Zero durations and counts take the
// defaults noted.
type Options struct {
	URL      string
	CAFile   string // PEM bundle, or a directory of them, trusted in addition to the system roots
	Username string
	Password string
	// Header is sent with every request, after basic auth: an
	// Authorization header here replaces it. Like basic auth, it goes to
	// the URL's host only: a redirect to another host or port gets
	// neither (the values may come from a Secret). Build it with
	// ParseHeaderLine.
	Header http.Header

	// AcceptUnframed accepts a body whose end only the server closing the
	// connection marks (no Content-Length, not chunked), which a cut
	// connection would look like too. Set it only when a checksum is
	// verified over the whole download.
	AcceptUnframed bool

	MaxRedirects   int           // default 5; never from https to http
	ConnectTimeout time.Duration // dial and TLS handshake; default 30s
	IdleTimeout    time.Duration // no bytes for this long counts as a failure; default 60s
	Retries        int           // attempts after a transient failure; default 5
	RetryWait      time.Duration // first back-off, doubled each time; default 1s

	Log logr.Logger
}

func (o *Options) setDefaults() {
	if o.MaxRedirects == 0 {
		o.MaxRedirects = 5
	}
	if o.ConnectTimeout == 0 {
		o.ConnectTimeout = 30 * time.Second
	}
	if o.IdleTimeout == 0 {
		o.IdleTimeout = 60 * time.Second
	}
	if o.Retries == 0 {
		o.Retries = 5
	}
	if o.RetryWait == 0 {
		o.RetryWait = time.Second
	}
}

// Source is a remote image.
type Source struct {
	opts   Options
	url    *url.URL
	client *http.Client
}

// ErrTooManyRedirects reports a redirect chain longer than MaxRedirects.
var ErrTooManyRedirects = errors.New("too many redirects")

// ErrInsecureRedirect reports a redirect from https to plain http.
var ErrInsecureRedirect = errors.New("redirect from https to http refused")

// ErrUnframed reports a body that ended with the connection, without a
// Content-Length or chunked encoding to show it was whole.
var ErrUnframed = errors.New("the server closed the connection without Content-Length or chunked encoding, so the download cannot be known to be complete (a checksum would make it acceptable)")

// New checks the options and builds the HTTP client.
func New(opts Options) (*Source, error) {
	opts.setDefaults()
	u, err := url.Parse(opts.URL)
	if err != nil {
		return nil, fmt.Errorf("parsing url: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("url scheme %q: want http or https", u.Scheme)
	}
	if u.User != nil {
		// Credentials in the URL become basic auth and leave the URL, so
		// they cannot reach a log line through it.
		if opts.Username == "" {
			opts.Username = u.User.Username()
			opts.Password, _ = u.User.Password()
		}
		u.User = nil
	}
	tlsConfig := &tls.Config{MinVersion: tls.VersionTLS12}
	if opts.CAFile != "" {
		pool, err := certs.SystemPoolWith(opts.CAFile)
		if err != nil {
			return nil, err
		}
		tlsConfig.RootCAs = pool
	}
	transport := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: opts.ConnectTimeout, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       tlsConfig,
		TLSHandshakeTimeout:   opts.ConnectTimeout,
		ResponseHeaderTimeout: opts.IdleTimeout,
		MaxIdleConnsPerHost:   32,
		IdleConnTimeout:       90 * time.Second,
		DisableCompression:    true, // the bytes are the image: never let the transport inflate them
		ReadBufferSize:        256 << 10,
		// HTTP/1.1: one TCP stream per download is faster than HTTP/2
		// flow control for bulk transfers.
		TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{},
	}
	client := &http.Client{
		Transport: transport,
	}
	s := &Source{opts: opts, url: u, client: client}
	client.CheckRedirect = s.checkRedirect
	return s, nil
}

// checkRedirect bounds the chain, refuses a downgrade to plain http, and
// strips the credentials from a request to another host than the URL's:
// Go's client would pass Authorization to another port or a subdomain,
// and every other header anywhere.
func (s *Source) checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) > s.opts.MaxRedirects {
		return fmt.Errorf("%w: stopped after %d", ErrTooManyRedirects, s.opts.MaxRedirects)
	}
	if prev := via[len(via)-1].URL; prev.Scheme == "https" && req.URL.Scheme != "https" {
		return fmt.Errorf("%w: %s redirected to %s", ErrInsecureRedirect, Safe(prev), Safe(req.URL))
	}
	if !sameHost(s.url, req.URL) {
		req.Header.Del("Authorization")
		for name := range s.opts.Header {
			req.Header.Del(name)
		}
	}
	return nil
}

// sameHost tells whether b is on a's host and port, or is a's host
// upgraded from http to https on the default ports.
func sameHost(a, b *url.URL) bool {
	if !strings.EqualFold(a.Hostname(), b.Hostname()) {
		return false
	}
	pa, pb := port(a), port(b)
	return pa == pb || (a.Scheme == "http" && pa == "80" && b.Scheme == "https" && pb == "443")
}

func port(u *url.URL) string {
	if p := u.Port(); p != "" {
		return p
	}
	if u.Scheme == "https" {
		return "443"
	}
	return "80"
}

// String is the URL without credentials or query, for logs and errors.
func (s *Source) String() string { return Safe(s.url) }

// Safe renders a URL for logs and messages: no user information, query or
// fragment, which may hold credentials.
func Safe(u *url.URL) string {
	c := *u
	c.User = nil
	c.RawQuery, c.ForceQuery = "", false
	c.Fragment, c.RawFragment = "", ""
	return c.String()
}

// safeURLString is Safe of a URL given as a string, or a placeholder.
func safeURLString(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	return Safe(u)
}

// Stream is an open download. Read resumes after transient failures.
type Stream struct {
	src       *Source
	ctx       context.Context
	body      io.ReadCloser
	watch     *watchdog
	pos       int64
	size      int64 // -1 when unknown
	ranges    bool
	validator string
	retries   int
	pending   error
	unframed  bool // the current body ends only when the connection does
}

// Open starts the download, retrying transient failures.
func (s *Source) Open(ctx context.Context) (*Stream, error) {
	st := &Stream{src: s, ctx: ctx, size: -1}
	err := st.request()
	for err != nil {
		if err = st.retry(err); err != nil {
			return nil, err
		}
		err = st.request()
	}
	return st, nil
}

// Size is the length of the image in bytes, -1 when the server did not say.
func (st *Stream) Size() int64 { return st.size }

// ReaderAt returns random access to the image through Range requests, if
// the server supports them and the size is known.
func (st *Stream) ReaderAt() (io.ReaderAt, bool) {
	if !st.ranges || st.size < 0 {
		return nil, false
	}
	return &rangeReader{src: st.src, ctx: st.ctx, validator: st.validator}, true
}

func (st *Stream) Read(p []byte) (int, error) {
	for {
		if st.pending != nil {
			cause := st.pending
			st.pending = nil
			if err := st.retry(cause); err != nil {
				return 0, err
			}
			if err := st.request(); err != nil {
				st.pending = err
				continue
			}
		}
		n, err := st.body.Read(p)
		st.pos += int64(n)
		if err == io.EOF && st.size >= 0 && st.pos < st.size {
			err = io.ErrUnexpectedEOF
		}
		if err == io.EOF && st.unframed && !st.src.opts.AcceptUnframed {
			err = ErrUnframed
		}
		if err != nil && err != io.EOF {
			err = st.watch.explain(err)
			if n > 0 {
				st.pending = err
				return n, nil
			}
			st.pending = err
			continue
		}
		return n, err
	}
}

// Close ends the download.
func (st *Stream) Close() error {
	if st.body != nil {
		st.watch.stop()
		return st.body.Close()
	}
	return nil
}

// request (re)starts the download at st.pos.
func (st *Stream) request() error {
	if st.body != nil {
		st.watch.stop()
		st.body.Close()
		st.body = nil
	}
	from := st.pos
	resp, watch, err := st.src.get(st.ctx, from, -1, st.validator)
	if err != nil {
		return err
	}
	switch {
	case from == 0 && resp.StatusCode == http.StatusOK:
		st.size = resp.ContentLength
		st.ranges = resp.Header.Get("Accept-Ranges") == "bytes"
		st.validator = validator(resp)
	case from > 0 && resp.StatusCode == http.StatusPartialContent:
		start, _, _ := parseContentRange(resp.Header.Get("Content-Range"))
		if start != from {
			watch.stop()
			resp.Body.Close()
			return fmt.Errorf("server resumed at byte %d, asked for %d", start, from)
		}
	default:
		watch.stop()
		resp.Body.Close()
		if from > 0 && resp.StatusCode == http.StatusOK {
			return errors.New("cannot resume the download: the server sent the whole file again (it changed, or ignores ranges)")
		}
		return fmt.Errorf("unexpected HTTP status %s", resp.Status)
	}
	st.body, st.watch = resp.Body, watch
	st.unframed = !framed(resp)
	return nil
}

// framed tells whether a response body's end is marked, so that a cut
// connection shows as an error (Go's client then returns
// io.ErrUnexpectedEOF) rather than as the end of the body.
func framed(resp *http.Response) bool {
	return resp.ContentLength >= 0 || slices.Contains(resp.TransferEncoding, "chunked") || resp.ProtoMajor >= 2
}

// retry waits before the next attempt, or returns why there is none.
func (st *Stream) retry(cause error) error {
	if !Transient(cause) || st.ctx.Err() != nil {
		return st.fail(cause)
	}
	if st.pos > 0 && !st.ranges {
		return st.fail(fmt.Errorf("%w (the server does not support range requests, so the download cannot resume)", cause))
	}
	if st.retries >= st.src.opts.Retries {
		return st.fail(fmt.Errorf("giving up after %d retries: %w", st.retries, cause))
	}
	wait := st.src.opts.RetryWait << st.retries
	st.retries++
	st.src.opts.Log.Info("retrying download", "url", st.src.String(), "offset", st.pos, "attempt", st.retries, "error", cause.Error())
	select {
	case <-time.After(wait):
		return nil
	case <-st.ctx.Done():
		return st.fail(st.ctx.Err())
	}
}

func (st *Stream) fail(err error) error {
	if st.pos == 0 {
		return fmt.Errorf("downloading %s: %w", st.src, err)
	}
	return fmt.Errorf("downloading %s at byte %d: %w", st.src, st.pos, err)
}

// get issues one GET, of the range [from, to] when from > 0 or to >= 0.
func (s *Source) get(ctx context.Context, from, to int64, ifRange string) (*http.Response, *watchdog, error) {
	ctx, cancel := context.WithCancel(ctx)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url.String(), nil)
	if err != nil {
		cancel()
		return nil, nil, err
	}
	if s.opts.Username != "" || s.opts.Password != "" {
		req.SetBasicAuth(s.opts.Username, s.opts.Password)
	}
	for name, values := range s.opts.Header {
		req.Header[name] = values
	}
	if from > 0 || to >= 0 {
		r := "bytes=" + strconv.FormatInt(from, 10) + "-"
		if to >= 0 {
			r += strconv.FormatInt(to, 10)
		}
		req.Header.Set("Range", r)
		if ifRange != "" {
			req.Header.Set("If-Range", ifRange)
		}
	}
	watch := newWatchdog(s.opts.IdleTimeout, cancel)
	resp, err := s.client.Do(req)
	if err != nil {
		watch.stop()
		var ue *url.Error
		if errors.As(err, &ue) {
			ue.URL = safeURLString(ue.URL) // it keeps the query string
		}
		return nil, nil, watch.explain(err)
	}
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusPartialContent {
		watch.stop()
		_, _ = io.CopyN(io.Discard, resp.Body, 4096)
		resp.Body.Close()
		se := &StatusError{Code: resp.StatusCode, Status: resp.Status}
		if final := resp.Request.URL; final.String() != s.url.String() {
			se.Redirected = Safe(final)
		}
		return nil, nil, se
	}
	resp.Body = &watchedBody{ReadCloser: resp.Body, watch: watch}
	return resp, watch, nil
}

// StatusError is an HTTP error status.
type StatusError struct {
	Code   int
	Status string // "404 Not Found"
	// Redirected is the URL (Safe) that answered, when a redirect led
	// away from the source URL.
	Redirected string
}

func (e *StatusError) Error() string {
	msg := "HTTP " + e.Status
	if e.Redirected != "" {
		msg += " from " + e.Redirected + " (redirected)"
	}
	switch e.Code {
	case http.StatusUnauthorized, http.StatusForbidden:
		return msg + ": the credentials were refused"
	}
	return msg
}

// Transient tells whether another attempt may succeed.
func Transient(err error) bool {
	var se *StatusError
	if errors.As(err, &se) {
		return se.Code >= 500 || se.Code == http.StatusRequestTimeout || se.Code == http.StatusTooManyRequests
	}
	var (
		unknownAuthority x509.UnknownAuthorityError
		hostname         x509.HostnameError
		invalid          x509.CertificateInvalidError
		verify           *tls.CertificateVerificationError
		recordHeader     tls.RecordHeaderError
		alert            tls.AlertError
	)
	switch {
	case errors.As(err, &unknownAuthority), errors.As(err, &hostname), errors.As(err, &invalid),
		errors.As(err, &verify), errors.As(err, &recordHeader), errors.As(err, &alert):
		return false
	case errors.Is(err, ErrTooManyRedirects), errors.Is(err, ErrInsecureRedirect), errors.Is(err, ErrUnframed), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return false
	case errors.Is(err, errStalled), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET):
		return true
	}
	var netErr net.Error
	var urlErr *url.Error
	return errors.As(err, &netErr) || errors.As(err, &urlErr)
}

func validator(resp *http.Response) string {
	if etag := resp.Header.Get("ETag"); etag != "" && !strings.HasPrefix(etag, "W/") {
		return etag
	}
	return resp.Header.Get("Last-Modified")
}

func parseContentRange(s string) (start, end int64, ok bool) {
	s, found := strings.CutPrefix(s, "bytes ")
	if !found {
		return -1, -1, false
	}
	r, _, _ := strings.Cut(s, "/")
	a, b, found := strings.Cut(r, "-")
	if !found {
		return -1, -1, false
	}
	start, err1 := strconv.ParseInt(a, 10, 64)
	end, err2 := strconv.ParseInt(b, 10, 64)
	return start, end, err1 == nil && err2 == nil
}

var errStalled = errors.New("stalled")

// watchdog cancels a request that delivers no bytes for too long.
type watchdog struct {
	idle    time.Duration
	timer   *time.Timer
	cancel  context.CancelFunc
	stalled atomic.Bool
}

func newWatchdog(idle time.Duration, cancel context.CancelFunc) *watchdog {
	w := &watchdog{idle: idle, cancel: cancel}
	w.timer = time.AfterFunc(idle, func() {
		w.stalled.Store(true)
		cancel()
	})
	return w
}

func (w *watchdog) kick() { w.timer.Reset(w.idle) }

func (w *watchdog) stop() {
	w.timer.Stop()
	w.cancel()
}

// explain turns the cancellation caused by the watchdog into errStalled.
func (w *watchdog) explain(err error) error {
	if w.stalled.Load() {
		return fmt.Errorf("%w: no data for %s", errStalled, w.idle)
	}
	return err
}

type watchedBody struct {
	io.ReadCloser
	watch *watchdog
}

func (b *watchedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if n > 0 {
		b.watch.kick()
	}
	return n, err
}

// rangeReader reads parts of the image with Range requests.
type rangeReader struct {
	src       *Source
	ctx       context.Context
	validator string
}

func (r *rangeReader) ReadAt(p []byte, off int64) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	var err error
	for attempt := 0; ; attempt++ {
		var n int
		n, err = r.readOnce(p, off)
		if err == nil {
			return n, nil
		}
		if !Transient(err) || attempt >= r.src.opts.Retries || r.ctx.Err() != nil {
			break
		}
		r.src.opts.Log.Info("retrying range read", "url", r.src.String(), "offset", off, "attempt", attempt+1, "error", err.Error())
		select {
		case <-time.After(r.src.opts.RetryWait << attempt):
		case <-r.ctx.Done():
		}
	}
	return 0, fmt.Errorf("reading %s bytes %d-%d: %w", r.src, off, off+int64(len(p))-1, err)
}

func (r *rangeReader) readOnce(p []byte, off int64) (int, error) {
	resp, watch, err := r.src.get(r.ctx, off, off+int64(len(p))-1, r.validator)
	if err != nil {
		return 0, err
	}
	defer watch.stop()
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent {
		return 0, fmt.Errorf("range request answered with %s (the image changed, or ranges are unsupported)", resp.Status)
	}
	if start, _, ok := parseContentRange(resp.Header.Get("Content-Range")); !ok || start != off {
		return 0, fmt.Errorf("range request answered with Content-Range %q", resp.Header.Get("Content-Range"))
	}
	n, err := io.ReadFull(resp.Body, p)
	if err != nil {
		return n, watch.explain(err)
	}
	return n, nil
}

// reservedHeaders are set by the download itself; an extra header of
// these names would break resuming or the framing of the request.
var reservedHeaders = map[string]bool{
	"Host": true, "Content-Length": true, "Transfer-Encoding": true, "Connection": true, "Keep-Alive": true,
	"Proxy-Connection": true, "Te": true, "Trailer": true, "Upgrade": true, "Range": true, "If-Range": true,
}

// ParseHeaderLine reads one extra header as CDI's extraHeaders and
// secretExtraHeaders hold them, "Name: value", white space around either
// trimmed. Errors never quote the value: it may be a secret.
func ParseHeaderLine(line string) (name, value string, err error) {
	rawName, rawValue, ok := strings.Cut(line, ":")
	name = strings.TrimSpace(rawName)
	if !ok || name == "" {
		return "", "", errors.New(`not a header line "Name: value"`)
	}
	for _, c := range []byte(name) {
		if !isTokenChar(c) {
			return "", "", fmt.Errorf("header name %q: only letters, digits and !#$%%&'*+-.^_`|~ are allowed", name)
		}
	}
	name = http.CanonicalHeaderKey(name)
	if reservedHeaders[name] {
		return "", "", fmt.Errorf("header %s is set by the download itself and cannot be given", name)
	}
	value = strings.TrimSpace(rawValue)
	for _, c := range []byte(value) {
		if c < ' ' && c != '\t' || c == 0x7f {
			return "", "", fmt.Errorf("header %s: the value holds a control character", name)
		}
	}
	return name, value, nil
}

// isTokenChar tells whether c may appear in a header name (RFC 9110 tchar).
func isTokenChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}
