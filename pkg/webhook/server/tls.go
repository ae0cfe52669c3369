package server

import "crypto/tls"

// newTLSConfig serves the current certificate, TLS 1.2 at least.
func newTLSConfig(certificate *servingCertificate) *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: certificate.GetCertificate,
		NextProtos:     []string{"h2", "http/1.1"},
	}
}
