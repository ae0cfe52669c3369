package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/datavolume/datavolume/pkg/webhook/endpoints"
	"github.com/datavolume/datavolume/pkg/webhook/internal/endpointstest"
)

// testCA signs client certificates.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	assert.NilError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	assert.NilError(t, err)
	cert, err := x509.ParseCertificate(der)
	assert.NilError(t, err)
	return &testCA{cert: cert, key: key}
}

func (ca *testCA) pem() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw})
}

// client issues a client certificate for commonName.
func (ca *testCA) client(t *testing.T, commonName string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	assert.NilError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: commonName},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	assert.NilError(t, err)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// startCallerServer serves the webhook's routes over TLS, requiring the
// client CA in caFile and the given names, as Run does.
func startCallerServer(t *testing.T, caFile string, names ...string) (url string, roots *x509.CertPool, callers *callerCertificates) {
	t.Helper()
	certFile, keyFile, certPEM := writeCertificate(t, t.TempDir(), "127.0.0.1")
	certificate, err := newServingCertificate(certFile, keyFile)
	assert.NilError(t, err)
	callers, err = newCallerCertificates(caFile, names)
	assert.NilError(t, err)
	config := &Config{options: *NewOptions(), certificate: certificate, callers: callers}
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	assert.NilError(t, err)
	server := config.newHTTPServer(endpoints.New(endpointstest.Dependencies(t, func() bool { return true })))
	go func() { _ = server.ServeTLS(listener, "", "") }()
	t.Cleanup(func() { _ = server.Close() })
	roots = x509.NewCertPool()
	assert.Assert(t, roots.AppendCertsFromPEM(certPEM))
	return "https://" + listener.Addr().String(), roots, callers
}

func get(url string, roots *x509.CertPool, certs ...tls.Certificate) (int, error) {
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: certs, MinVersion: tls.VersionTLS12},
	}}
	resp, err := client.Get(url + "/readyz")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	return resp.StatusCode, nil
}

// Only the API servers, with certificates the client CA signed for the
// allowed names, get past the TLS handshake; any other client gets no
// answer at all.
func TestOnlyTheCallersCertificatesAreServed(t *testing.T) {
	dir := t.TempDir()
	ca, other := newTestCA(t, "webhook-clients"), newTestCA(t, "someone-else")
	caFile := filepath.Join(dir, "client-ca.crt")
	assert.NilError(t, os.WriteFile(caFile, ca.pem(), 0o600))
	url, roots, _ := startCallerServer(t, caFile, "kube-apiserver", "datavolume-apiserver")

	for _, caller := range []string{"kube-apiserver", "datavolume-apiserver"} {
		code, err := get(url, roots, ca.client(t, caller))
		assert.NilError(t, err, caller)
		assert.Check(t, is.Equal(code, http.StatusOK), caller)
	}
	_, err := get(url, roots)
	assert.ErrorContains(t, err, "certificate required", "a client without a certificate")
	_, err = get(url, roots, other.client(t, "kube-apiserver"))
	assert.ErrorContains(t, err, "bad certificate", "a certificate of another CA")
	_, err = get(url, roots, ca.client(t, "system:serviceaccount:tenant:default"))
	assert.ErrorContains(t, err, "bad certificate", "a certificate of the CA for another name")
}

// A new client CA in the file is used without a restart.
func TestClientCAReloads(t *testing.T) {
	dir := t.TempDir()
	first, second := newTestCA(t, "first"), newTestCA(t, "second")
	caFile := filepath.Join(dir, "client-ca.crt")
	assert.NilError(t, os.WriteFile(caFile, first.pem(), 0o600))
	url, roots, callers := startCallerServer(t, caFile)

	code, err := get(url, roots, first.client(t, "kube-apiserver"))
	assert.NilError(t, err)
	assert.Equal(t, code, http.StatusOK)

	assert.NilError(t, os.WriteFile(caFile, second.pem(), 0o600))
	assert.NilError(t, callers.ca.RunOnce(context.Background()))
	code, err = get(url, roots, second.client(t, "kube-apiserver"))
	assert.NilError(t, err)
	assert.Equal(t, code, http.StatusOK)
	_, err = get(url, roots, first.client(t, "kube-apiserver"))
	assert.ErrorContains(t, err, "bad certificate", "the retired CA")
}
