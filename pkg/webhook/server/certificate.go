package server

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"sync"

	"k8s.io/apiserver/pkg/server/dynamiccertificates"
)

// servingCertificate hands TLS the current certificate from files that a
// dynamiccertificates controller watches, parsing it again only when the
// files' content changed.
type servingCertificate struct {
	content *dynamiccertificates.DynamicCertKeyPairContent

	mu              sync.Mutex
	certPEM, keyPEM []byte
	parsed          *tls.Certificate
}

// newServingCertificate loads the pair once; it fails if the files are
// missing or do not hold a matching certificate and key.
func newServingCertificate(certFile, keyFile string) (*servingCertificate, error) {
	content, err := dynamiccertificates.NewDynamicServingContentFromFiles("serving-cert", certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("loading the serving certificate: %w", err)
	}
	return &servingCertificate{content: content}, nil
}

// GetCertificate is tls.Config.GetCertificate.
func (s *servingCertificate) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	certPEM, keyPEM := s.content.CurrentCertKeyContent()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.parsed != nil && bytes.Equal(certPEM, s.certPEM) && bytes.Equal(keyPEM, s.keyPEM) {
		return s.parsed, nil
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("parsing the serving certificate: %w", err)
	}
	s.certPEM, s.keyPEM, s.parsed = certPEM, keyPEM, &cert
	return s.parsed, nil
}
