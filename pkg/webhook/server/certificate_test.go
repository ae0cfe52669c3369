package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"gotest.tools/v3/assert"
	certutil "k8s.io/client-go/util/cert"

	"github.com/datavolume/datavolume/pkg/webhook/endpoints"
	"github.com/datavolume/datavolume/pkg/webhook/internal/endpointstest"
)

// writeCertificate writes a self-signed pair for host into dir.
func writeCertificate(t *testing.T, dir, host string) (certFile, keyFile string, certPEM []byte) {
	t.Helper()
	certPEM, keyPEM, err := certutil.GenerateSelfSignedCertKey(host, nil, nil)
	assert.NilError(t, err)
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	assert.NilError(t, os.WriteFile(certFile, certPEM, 0o600))
	assert.NilError(t, os.WriteFile(keyFile, keyPEM, 0o600))
	return certFile, keyFile, certPEM
}

func commonName(t *testing.T, cert *tls.Certificate) string {
	t.Helper()
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	assert.NilError(t, err)
	return leaf.Subject.CommonName
}

func TestServingCertificateReloads(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, _ := writeCertificate(t, dir, "first.example")
	certificate, err := newServingCertificate(certFile, keyFile)
	assert.NilError(t, err)

	cert, err := certificate.GetCertificate(nil)
	assert.NilError(t, err)
	assert.Assert(t, len(cert.Certificate) > 0)
	first := commonName(t, cert)

	again, err := certificate.GetCertificate(nil)
	assert.NilError(t, err)
	assert.Assert(t, again == cert, "an unchanged pair is not parsed again")

	writeCertificate(t, dir, "second.example")
	// What the file watcher does on a change.
	assert.NilError(t, certificate.content.RunOnce(context.Background()))
	reloaded, err := certificate.GetCertificate(nil)
	assert.NilError(t, err)
	assert.Assert(t, commonName(t, reloaded) != first)
	assert.Assert(t, reloaded.Leaf == nil || reloaded.Leaf.Subject.CommonName != first)
}

func TestServingCertificateRefusesMissingFiles(t *testing.T) {
	_, err := newServingCertificate(filepath.Join(t.TempDir(), "tls.crt"), filepath.Join(t.TempDir(), "tls.key"))
	assert.ErrorContains(t, err, "loading the serving certificate")
}

func TestServesHealthOverTLS(t *testing.T) {
	certFile, keyFile, certPEM := writeCertificate(t, t.TempDir(), "127.0.0.1")
	certificate, err := newServingCertificate(certFile, keyFile)
	assert.NilError(t, err)

	// httptest would put its own certificate first; serve as Run does.
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	assert.NilError(t, err)
	server := &http.Server{Handler: endpoints.New(endpointstest.Dependencies(t, func() bool { return true })), TLSConfig: newTLSConfig(certificate)}
	go func() { _ = server.ServeTLS(listener, "", "") }()
	defer server.Close()

	roots := x509.NewCertPool()
	assert.Assert(t, roots.AppendCertsFromPEM(certPEM))
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}}}
	resp, err := client.Get("https://" + listener.Addr().String() + "/readyz")
	assert.NilError(t, err)
	defer resp.Body.Close()
	assert.Equal(t, resp.StatusCode, http.StatusOK)
}
