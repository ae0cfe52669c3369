package server

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"

	"k8s.io/apiserver/pkg/server/dynamiccertificates"
)

// callerCertificates admits only the webhook's callers to the TLS
// handshake: a client certificate signed by the client CA (reloaded when its
// file changes), and, when names are given, with one of those common names.
// Anything else that reaches the port (any pod, with a hand-made
// AdmissionReview) is refused before it can ask what claims exist, their
// sizes, or who may clone them.
type callerCertificates struct {
	ca *dynamiccertificates.DynamicFileCAContent
	// names are the allowed common names; empty allows any certificate the
	// CA signed.
	names []string
}

func newCallerCertificates(caFile string, names []string) (*callerCertificates, error) {
	ca, err := dynamiccertificates.NewDynamicCAContentFromFile("client-ca", caFile)
	if err != nil {
		return nil, fmt.Errorf("loading --client-ca-file: %w", err)
	}
	return &callerCertificates{ca: ca, names: names}, nil
}

// verify is tls.Config.VerifyPeerCertificate with tls.RequireAnyClientCert:
// the chain is verified against the current CA, so that a rotated CA needs
// no restart.
func (c *callerCertificates) verify(rawCerts [][]byte, _ [][]*x509.Certificate) error {
	if len(rawCerts) == 0 {
		return errors.New("no client certificate")
	}
	certs := make([]*x509.Certificate, 0, len(rawCerts))
	for _, raw := range rawCerts {
		cert, err := x509.ParseCertificate(raw)
		if err != nil {
			return fmt.Errorf("parsing the client certificate: %w", err)
		}
		certs = append(certs, cert)
	}
	opts, ok := c.ca.VerifyOptions()
	if !ok {
		return errors.New("no client CA loaded")
	}
	opts.Intermediates = x509.NewCertPool()
	for _, cert := range certs[1:] {
		opts.Intermediates.AddCert(cert)
	}
	if _, err := certs[0].Verify(opts); err != nil {
		return fmt.Errorf("client certificate %q: %w", certs[0].Subject.CommonName, err)
	}
	if len(c.names) > 0 && !slices.Contains(c.names, certs[0].Subject.CommonName) {
		return fmt.Errorf("client certificate %q is not one of the allowed callers %v", certs[0].Subject.CommonName, c.names)
	}
	return nil
}

// require makes config ask every client for a certificate and verify it.
func (c *callerCertificates) require(config *tls.Config) {
	config.ClientAuth = tls.RequireAnyClientCert
	config.VerifyPeerCertificate = c.verify
}
