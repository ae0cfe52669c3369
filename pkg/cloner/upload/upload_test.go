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
			srv := upload.New(importer.Options{
				ContentType: importer.KubeVirt, Target: target, TargetSize: 16 << 20, ScratchDir: t.TempDir(), Log: logr.Discard(),
			})
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
