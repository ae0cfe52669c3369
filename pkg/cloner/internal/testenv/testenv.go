// Package testenv holds what the cloner tests share: real tools, test
// images, loop devices, HTTPS servers and a real OCI registry, all on
// loopback.
package testenv

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"gotest.tools/v3/assert"
)

// RequireTools fails the test when a tool is missing: a skipped test must
// never count as passing.
func RequireTools(t testing.TB, names ...string) {
	t.Helper()
	for _, name := range names {
		if _, err := exec.LookPath(name); err != nil {
			if _, serr := os.Stat("/usr/sbin/" + name); serr == nil {
				continue
			}
			t.Fatalf("%s is not installed: run hack/install-deps.sh", name)
		}
	}
}

// Run runs a command and fails the test if it fails.
func Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	RequireTools(t, name)
	out, err := exec.Command(name, args...).CombinedOutput()
	assert.NilError(t, err, "%s %s: %s", name, strings.Join(args, " "), out)
	return string(out)
}

// Shell runs a shell pipeline and fails the test if it fails.
func Shell(t testing.TB, script string) {
	t.Helper()
	out, err := exec.Command("sh", "-ec", script).CombinedOutput()
	assert.NilError(t, err, "%s: %s", script, out)
}

// WriteDisk writes a size-byte raw disk of deterministic pseudo-random
// data: MiB-sized runs of data alternate with zero runs, and a few lone
// 4 KiB blocks sit inside the zero runs.
func WriteDisk(t testing.TB, path string, size int64, seed uint64) {
	t.Helper()
	f, err := os.Create(path)
	assert.NilError(t, err)
	defer f.Close()
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	buf := make([]byte, 1<<20)
	for off := int64(0); off < size; off += int64(len(buf)) {
		n := min(int64(len(buf)), size-off)
		chunk := buf[:n]
		clear(chunk)
		if (off>>20)%2 == 0 {
			for i := range chunk {
				chunk[i] = byte(rng.Uint32())
			}
		} else if n > 8192 {
			for i := 4096; i < 8192; i++ {
				chunk[i] = byte(rng.Uint32() | 1)
			}
		}
		_, err := f.WriteAt(chunk, off)
		assert.NilError(t, err)
	}
	assert.NilError(t, f.Truncate(size))
}

// RawOf converts any image to raw with qemu-img: the reference every
// import is compared with.
func RawOf(t testing.TB, image string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "reference.raw")
	Run(t, "qemu-img", "convert", "-O", "raw", image, out)
	return out
}

// AssertSameDisk compares got with the reference over the reference's
// size and requires the rest of got to read as zeros.
func AssertSameDisk(t testing.TB, got, want string) {
	t.Helper()
	g, err := os.Open(got)
	assert.NilError(t, err)
	defer g.Close()
	w, err := os.Open(want)
	assert.NilError(t, err)
	defer w.Close()
	gb, wb := make([]byte, 1<<20), make([]byte, 1<<20)
	var off int64
	for {
		wn, werr := io.ReadFull(w, wb)
		gn, _ := io.ReadFull(g, gb[:max(wn, 1)])
		if wn == 0 {
			break
		}
		assert.Assert(t, gn == wn, "%s is shorter than the reference at %d", got, off)
		if !bytes.Equal(gb[:gn], wb[:wn]) {
			t.Fatalf("%s differs from the reference in the MiB at %d", got, off)
		}
		off += int64(wn)
		if werr != nil {
			break
		}
	}
	for {
		n, err := g.Read(gb)
		if n > 0 && !bytes.Equal(gb[:n], make([]byte, n)) {
			t.Fatalf("%s holds non-zero data past the image's %d bytes", got, off)
		}
		if err != nil {
			break
		}
	}
}

// SHA256 returns "sha256:<hex>" of a file.
func SHA256(t testing.TB, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	assert.NilError(t, err)
	sum := sha256.Sum256(data)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// Loop attaches a file as a loop device, detached at cleanup.
func Loop(t testing.TB, file string) string {
	t.Helper()
	dev := strings.TrimSpace(Run(t, "losetup", "-f", "--show", file))
	t.Cleanup(func() {
		if out, err := exec.Command("losetup", "-d", dev).CombinedOutput(); err != nil {
			t.Errorf("detaching %s: %v: %s", dev, err, out)
		}
	})
	return dev
}

// BlockDevice creates a loop device of the given size filled with 0xAA,
// so a test sees any old data that shows through.
func BlockDevice(t testing.TB, size int64) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "block.img")
	f, err := os.Create(file)
	assert.NilError(t, err)
	buf := bytes.Repeat([]byte{0xaa}, 1<<20)
	for off := int64(0); off < size; off += int64(len(buf)) {
		_, err := f.Write(buf[:min(int64(len(buf)), size-off)])
		assert.NilError(t, err)
	}
	assert.NilError(t, f.Close())
	return Loop(t, file)
}

// Server is an HTTPS test server with basic auth and its own CA.
type Server struct {
	*httptest.Server
	CAFile   string
	Username string
	Password string
}

// FileServer serves dir over HTTPS with basic auth; Range requests work.
// wrap, when non-nil, sits in front of the file handler.
func FileServer(t testing.TB, dir string, wrap func(http.Handler) http.Handler) *Server {
	t.Helper()
	s := &Server{Username: "importer", Password: "s3cret-Pa55"}
	var h http.Handler = http.FileServer(http.Dir(dir))
	if wrap != nil {
		h = wrap(h)
	}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pass, ok := r.BasicAuth()
		if !ok || user != s.Username || pass != s.Password {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	}))
	s.StartTLS()
	t.Cleanup(s.Close)
	s.CAFile = filepath.Join(t.TempDir(), "ca.crt")
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Certificate().Raw})
	assert.NilError(t, os.WriteFile(s.CAFile, caPEM, 0o644))
	return s
}

// Logger captures log lines for assertions about what may never be logged.
type Logger struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// NewLogger returns a logger writing to a buffer, at verbosity 5.
func NewLogger() (logr.Logger, *Logger) {
	l := &Logger{}
	return funcr.NewJSON(func(obj string) {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.buf.WriteString(obj + "\n")
	}, funcr.Options{Verbosity: 5}), l
}

// String returns everything logged so far.
func (l *Logger) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// FreePort returns a free TCP port on 127.0.0.1.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	assert.NilError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Registry starts Debian's docker-registry on a free loopback port with a
// temporary storage directory and returns its host:port.
func Registry(t testing.TB) string {
	t.Helper()
	RequireTools(t, "docker-registry")
	dir := t.TempDir()
	host := fmt.Sprintf("127.0.0.1:%d", FreePort(t))
	config := fmt.Sprintf(`version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
`, filepath.Join(dir, "storage"), host)
	cfg := filepath.Join(dir, "config.yml")
	assert.NilError(t, os.WriteFile(cfg, []byte(config), 0o644))
	cmd := exec.Command("docker-registry", "serve", cfg)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	assert.NilError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get("http://" + host + "/v2/")
		if err == nil {
			resp.Body.Close()
			return host
		}
		if time.Now().After(deadline) {
			t.Fatalf("docker-registry did not start: %v\n%s", err, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
