package upload_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"gotest.tools/v3/assert"

	"github.com/datavolume/datavolume/pkg/cloner/certs"
	"github.com/datavolume/datavolume/pkg/cloner/importer"
	"github.com/datavolume/datavolume/pkg/cloner/internal/testenv"
	"github.com/datavolume/datavolume/pkg/cloner/upload"
)

func TestUpload(t *testing.T) {
	testenv.RequireTools(t, "qemu-img", "xz")
	dir := t.TempDir()
	raw := filepath.Join(dir, "disk.raw")
	testenv.WriteDisk(t, raw, 8<<20, 9)
	qcow := filepath.Join(dir, "disk.qcow2")
	testenv.Run(t, "qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, qcow)
	testenv.Shell(t, "xz -k -0 -T1 "+raw)
	files, err := certs.Generate(filepath.Join(dir, "certs"), []string{"127.0.0.1"}, time.Hour)
	assert.NilError(t, err)
	serverTLS, err := certs.ServerConfig(files.ServerCert, files.ServerKey, files.CA)
	assert.NilError(t, err)
	clientTLS, err := certs.ClientConfig(files.ClientCert, files.ClientKey, files.CA, "127.0.0.1")
	assert.NilError(t, err)

	for _, image := range []string{raw + ".xz", qcow} {
		t.Run(filepath.Base(image), func(t *testing.T) {
			target := filepath.Join(t.TempDir(), "disk.img")
			srv := upload.New(upload.Options{Import: importer.Options{
				ContentType: importer.KubeVirt, Target: target, TargetSize: 16 << 20, ScratchDir: t.TempDir(), Log: logr.Discard(),
			}})
			l, err := net.Listen("tcp", "127.0.0.1:0")
			assert.NilError(t, err)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			served := make(chan error, 1)
			go func() { served <- upload.Serve(ctx, l, serverTLS, srv) }()
			url := "https://" + l.Addr().String() + "/v1beta1/upload"

			// No client certificate: refused at the TLS handshake.
			noCert := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: clientTLS.RootCAs}}}
			_, err = noCert.Post(url, "application/octet-stream", strings.NewReader("x"))
			assert.ErrorContains(t, err, "certificate")

			client := &http.Client{Transport: &http.Transport{TLSClientConfig: clientTLS}}
			// A broken upload fails and can be retried.
			resp, err := client.Post(url, "application/octet-stream", bytes.NewReader([]byte("QFI\xfb garbage")))
			assert.NilError(t, err)
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			assert.Equal(t, resp.StatusCode, http.StatusInternalServerError, "%s", body)

			f, err := os.Open(image)
			assert.NilError(t, err)
			defer f.Close()
			resp, err = client.Post(url, "application/octet-stream", f)
			assert.NilError(t, err)
			body, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
			assert.Equal(t, resp.StatusCode, http.StatusOK, "%s", body)
			assert.NilError(t, <-served, "the server stops after a successful upload")
			testenv.AssertSameDisk(t, target, raw)
		})
	}
}

// The server refuses to serve without client certificates: anyone who can
// reach the pod could otherwise write the volume.
func TestServeRequiresClientCertificates(t *testing.T) {
	files, err := certs.Generate(filepath.Join(t.TempDir(), "certs"), []string{"127.0.0.1"}, time.Hour)
	assert.NilError(t, err)
	noClientCA, err := certs.ServerConfig(files.ServerCert, files.ServerKey, "")
	assert.NilError(t, err)
	srv := upload.New(upload.Options{Import: importer.Options{
		ContentType: importer.KubeVirt, Target: filepath.Join(t.TempDir(), "disk.img"), Log: logr.Discard(),
	}})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	assert.NilError(t, err)
	defer l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = upload.Serve(ctx, l, noClientCA, srv)
	assert.ErrorContains(t, err, "client certificates")
}

// stalled is a request body that sends a little, then nothing more until
// released.
type stalled struct {
	sent    bool
	started chan struct{} // closed when the server asks for the body
	release chan struct{}
}

func (s *stalled) Read(p []byte) (int, error) {
	if !s.sent {
		s.sent = true
		close(s.started)
		return copy(p, "QFI\xfb\x00\x00\x00\x03"), nil
	}
	<-s.release
	return 0, io.ErrUnexpectedEOF
}

// A client that stops sending in the middle of its upload loses the slot
// after the idle timeout, and the next client's upload goes through.
func TestUploadStalledClientLosesTheSlot(t *testing.T) {
	dir := t.TempDir()
	raw := filepath.Join(dir, "disk.raw")
	testenv.WriteDisk(t, raw, 1<<20, 5)
	files, err := certs.Generate(filepath.Join(dir, "certs"), []string{"127.0.0.1"}, time.Hour)
	assert.NilError(t, err)
	serverTLS, err := certs.ServerConfig(files.ServerCert, files.ServerKey, files.CA)
	assert.NilError(t, err)
	clientTLS, err := certs.ClientConfig(files.ClientCert, files.ClientKey, files.CA, "127.0.0.1")
	assert.NilError(t, err)
	target := filepath.Join(t.TempDir(), "disk.img")
	srv := upload.New(upload.Options{
		Import:      importer.Options{ContentType: importer.KubeVirt, Target: target, TargetSize: 1 << 20, Log: logr.Discard()},
		IdleTimeout: 300 * time.Millisecond,
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	assert.NilError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- upload.Serve(ctx, l, serverTLS, srv) }()
	url := "https://" + l.Addr().String() + "/v1beta1/upload"

	slow := &stalled{started: make(chan struct{}), release: make(chan struct{})}
	defer close(slow.release)
	slowDone := make(chan int, 1)
	go func() {
		// With Expect: 100-continue the body is read only once the
		// handler reads it, that is, holds the slot.
		client := &http.Client{Transport: &http.Transport{TLSClientConfig: clientTLS, ExpectContinueTimeout: 5 * time.Second}}
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, slow)
		req.ContentLength = 1 << 20
		req.Header.Set("Expect", "100-continue")
		resp, err := client.Do(req)
		if err != nil {
			slowDone <- 0
			return
		}
		resp.Body.Close()
		slowDone <- resp.StatusCode
	}()

	select {
	case <-slow.started:
	case <-time.After(5 * time.Second):
		t.Fatal("the slow upload never started")
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: clientTLS}}
	deadline := time.Now().Add(3 * time.Second)
	var sawBusy bool
	for {
		f, err := os.Open(raw)
		assert.NilError(t, err)
		resp, err := client.Post(url, "application/octet-stream", f)
		f.Close()
		assert.NilError(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			break
		}
		assert.Equal(t, resp.StatusCode, http.StatusServiceUnavailable, "%s", body)
		sawBusy = true
		assert.Assert(t, time.Now().Before(deadline), "the stalled client still holds the slot after 3s")
		time.Sleep(50 * time.Millisecond)
	}
	assert.Assert(t, sawBusy, "the stalled upload held the slot for a while")
	assert.NilError(t, <-served)
	testenv.AssertSameDisk(t, target, raw)
	select {
	case code := <-slowDone:
		assert.Assert(t, code != http.StatusOK, "the stalled upload failed (status %d)", code)
	case <-time.After(2 * time.Second):
		t.Fatal("the stalled upload's request never ended")
	}
}
