package pki

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"os"
	"testing"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
)

// A server certificate verifies for its names and addresses against the CA
// that issued it, and its key stays readable by root only.
func TestIssuedServerCertificateVerifies(t *testing.T) {
	dir := t.TempDir()
	ca, err := NewCA(dir, "test-ca")
	assert.NilError(t, err)
	kp, err := ca.Issue(dir, "server", "server", nil, "svc.ns.svc", "10.244.255.1")
	assert.NilError(t, err)
	_, err = tls.LoadX509KeyPair(kp.CertFile, kp.KeyFile)
	assert.NilError(t, err)
	info, err := os.Stat(kp.KeyFile)
	assert.NilError(t, err)
	assert.Check(t, is.Equal(info.Mode().Perm(), os.FileMode(0o600)))

	block, _ := pem.Decode(kp.CertPEM)
	cert, err := x509.ParseCertificate(block.Bytes)
	assert.NilError(t, err)
	roots := x509.NewCertPool()
	assert.Assert(t, roots.AppendCertsFromPEM(ca.CertPEM()))
	for _, name := range []string{"svc.ns.svc", "10.244.255.1"} {
		_, err := cert.Verify(x509.VerifyOptions{DNSName: name, Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
		assert.Check(t, err, name)
	}
	_, err = cert.Verify(x509.VerifyOptions{DNSName: "other.ns.svc", Roots: roots})
	assert.Check(t, err != nil, "a name the certificate lacks")
}

// A client certificate carries its groups as organizations and is no
// server's.
func TestIssuedClientCertificate(t *testing.T) {
	dir := t.TempDir()
	ca, err := NewCA(dir, "test-ca")
	assert.NilError(t, err)
	kp, err := ca.Issue(dir, "admin", "kubernetes-admin", []string{"system:masters"})
	assert.NilError(t, err)
	block, _ := pem.Decode(kp.CertPEM)
	cert, err := x509.ParseCertificate(block.Bytes)
	assert.NilError(t, err)
	assert.Check(t, is.Equal(cert.Subject.CommonName, "kubernetes-admin"))
	assert.Check(t, is.DeepEqual(cert.Subject.Organization, []string{"system:masters"}))
	assert.Check(t, is.DeepEqual(cert.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}))
	other, err := NewCA(t.TempDir(), "other-ca")
	assert.NilError(t, err)
	roots := x509.NewCertPool()
	roots.AddCert(other.Cert)
	_, err = cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	assert.Check(t, err != nil, "another CA's")
}
