//go:build e2e

package e2e

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/crane"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"gotest.tools/v3/assert"

	"github.com/datavolume/datavolume/pkg/cloner/certs"
)

// Pods cannot reach this host's loopback: the servers the tests start for
// them listen on the node's own address, and stop with the test.

// images is a directory of one test disk in every format the matrix names.
type images struct {
	dir string
	// raw is the reference: every import must read back as it, then zeros.
	raw string
}

// makeImages writes a diskSize-byte disk (data runs and zero runs) as
// disk.raw, disk.qcow2, disk.raw.gz, disk.raw.xz, and an archive disk.tar.
func makeImages(t *testing.T, diskSize int64) images {
	t.Helper()
	dir := t.TempDir()
	raw := filepath.Join(dir, "disk.raw")
	f, err := os.Create(raw)
	assert.NilError(t, err)
	rng := rand.New(rand.NewPCG(uint64(diskSize), 7))
	buf := make([]byte, 1<<20)
	for off := int64(0); off < diskSize; off += int64(len(buf)) {
		clear(buf)
		if (off>>20)%3 != 1 {
			for i := range buf {
				buf[i] = byte(rng.Uint32())
			}
		}
		_, err := f.Write(buf[:min(int64(len(buf)), diskSize-off)])
		assert.NilError(t, err)
	}
	assert.NilError(t, f.Close())
	for _, args := range [][]string{
		{"qemu-img", "convert", "-f", "raw", "-O", "qcow2", "disk.raw", "disk.qcow2"},
		{"sh", "-c", "gzip -1 -k -c disk.raw > disk.raw.gz"},
		{"sh", "-c", "xz -1 -T2 -k -c disk.raw > disk.raw.xz"},
	} {
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		assert.NilError(t, err, string(out))
	}
	writeArchive(t, filepath.Join(dir, "disk.tar"), map[string]string{"etc/motd": "hello from the archive\n", "data/a.txt": "a"})
	return images{dir: dir, raw: raw}
}

func writeArchive(t *testing.T, path string, files map[string]string) {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for name, content := range files {
		assert.NilError(t, tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(content)), Typeflag: tar.TypeReg}))
		_, err := tw.Write([]byte(content))
		assert.NilError(t, err)
	}
	assert.NilError(t, tw.Close())
	assert.NilError(t, os.WriteFile(path, b.Bytes(), 0o644))
}

// serve serves handler at the host's address for pods until the test ends and
// returns host:port.
func serve(t *testing.T, handler http.Handler, config *tls.Config) string {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(cluster.HostAddressForPods().String(), "0"))
	assert.NilError(t, err)
	if config != nil {
		l = tls.NewListener(l, config)
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return l.Addr().String()
}

// serveFiles serves dir over plain HTTP (Range requests work); wrap, when
// non-nil, sits in front. It returns the base URL.
func serveFiles(t *testing.T, dir string, wrap func(http.Handler) http.Handler) string {
	t.Helper()
	var h http.Handler = http.FileServer(http.Dir(dir))
	if wrap != nil {
		h = wrap(h)
	}
	return "http://" + serve(t, h, nil)
}

// tlsServer is an HTTPS server with its own CA and basic auth.
type tlsServer struct {
	base, caPEM, user, password string
}

func serveFilesTLS(t *testing.T, dir string) tlsServer {
	t.Helper()
	files, err := certs.Generate(t.TempDir(), []string{cluster.HostAddressForPods().String()}, time.Hour)
	assert.NilError(t, err)
	pair, err := tls.LoadX509KeyPair(files.ServerCert, files.ServerKey)
	assert.NilError(t, err)
	ca, err := os.ReadFile(files.CA)
	assert.NilError(t, err)
	s := tlsServer{caPEM: string(ca), user: "importer", password: "s3cret-Pa55"}
	files2 := http.FileServer(http.Dir(dir))
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if user, pass, ok := r.BasicAuth(); !ok || user != s.user || pass != s.password {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		files2.ServeHTTP(w, r)
	})
	s.base = "https://" + serve(t, h, &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12})
	return s
}

// throttled sends at most bytesPerSecond, so a test sees a transfer while
// it runs.
func throttled(bytesPerSecond int) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			next.ServeHTTP(&slowWriter{ResponseWriter: w, perSecond: bytesPerSecond, ctx: r}, r)
		})
	}
}

type slowWriter struct {
	http.ResponseWriter
	perSecond int
	ctx       *http.Request
}

func (s *slowWriter) Write(p []byte) (int, error) {
	written := 0
	chunk := max(s.perSecond/10, 1)
	for len(p) > 0 {
		n := min(chunk, len(p))
		m, err := s.ResponseWriter.Write(p[:n])
		written += m
		if err != nil {
			return written, err
		}
		if f, ok := s.ResponseWriter.(http.Flusher); ok {
			f.Flush()
		}
		p = p[n:]
		select {
		case <-s.ctx.Context().Done():
			return written, s.ctx.Context().Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return written, nil
}

// registry starts Debian's docker-registry at the host's address for pods and
// returns host:port.
func registry(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	l, err := net.Listen("tcp", net.JoinHostPort(cluster.HostAddressForPods().String(), "0"))
	assert.NilError(t, err)
	host := l.Addr().String()
	assert.NilError(t, l.Close())
	config := fmt.Sprintf("version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: %s\n",
		filepath.Join(dir, "storage"), host)
	cfg := filepath.Join(dir, "config.yml")
	assert.NilError(t, os.WriteFile(cfg, []byte(config), 0o644))
	bin := "/usr/bin/docker-registry"
	cmd := exec.Command(bin, "serve", cfg)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	assert.NilError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	eventually(t, 15*time.Second, func() error {
		resp, err := http.Get("http://" + host + "/v2/")
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	})
	return host
}

// pushDisk pushes an image holding file as /disk/<base name> and returns
// its docker:// URL.
func pushDisk(t *testing.T, host, repo, file string) string {
	t.Helper()
	data, err := os.ReadFile(file)
	assert.NilError(t, err)
	img, err := crane.Image(map[string][]byte{"disk/" + filepath.Base(file): data})
	assert.NilError(t, err)
	ref, err := name.ParseReference(host+"/"+repo, name.Insecure)
	assert.NilError(t, err)
	assert.NilError(t, remote.Write(ref, img))
	return "docker://" + host + "/" + repo
}

// sha256Padded is the sha256 of file followed by zeros up to size bytes:
// what a volume of that usable size holds after importing it.
func sha256Padded(t *testing.T, file string, size int64) string {
	t.Helper()
	f, err := os.Open(file)
	assert.NilError(t, err)
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	assert.NilError(t, err)
	assert.Assert(t, n <= size, "%s (%d bytes) is larger than %d", file, n, size)
	_, err = io.CopyN(h, zeroReader{}, size-n)
	assert.NilError(t, err)
	return hex.EncodeToString(h.Sum(nil))
}

// sha256Of is the sha256 of the first size bytes of path (a file or a
// block device), and how many bytes it has.
func sha256Of(t *testing.T, path string, size int64) (string, int64) {
	t.Helper()
	f, err := os.Open(path)
	assert.NilError(t, err)
	defer f.Close()
	total, err := f.Seek(0, io.SeekEnd)
	assert.NilError(t, err)
	_, err = f.Seek(0, io.SeekStart)
	assert.NilError(t, err)
	h := sha256.New()
	_, err = io.CopyN(h, f, min(size, total))
	assert.NilError(t, err)
	return hex.EncodeToString(h.Sum(nil)), total
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
