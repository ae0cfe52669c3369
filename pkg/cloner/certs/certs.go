// Package certs makes the per-job certificates of a clone (a CA, a server
// certificate for the clone target and a client certificate for the clone
// source) and turns them into mutual-TLS configurations; it also loads the
// custom CA of an import source.
package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Files names the PEM files Generate writes into a directory.
type Files struct {
	CA         string // ca.crt
	ServerCert string // server.crt
	ServerKey  string // server.key
	ClientCert string // client.crt
	ClientKey  string // client.key
}

// InDir returns the file names Generate uses in dir.
func InDir(dir string) Files {
	return Files{
		CA:         filepath.Join(dir, "ca.crt"),
		ServerCert: filepath.Join(dir, "server.crt"),
		ServerKey:  filepath.Join(dir, "server.key"),
		ClientCert: filepath.Join(dir, "client.crt"),
		ClientKey:  filepath.Join(dir, "client.key"),
	}
}

// Generate writes a fresh CA and a server and client certificate signed by
// it into dir. hosts (DNS names or IP addresses) go into the server
// certificate. The CA key is not kept: nothing else can be signed later.
func Generate(dir string, hosts []string, validity time.Duration) (Files, error) {
	if len(hosts) == 0 {
		return Files{}, errors.New("the server certificate needs at least one host name")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Files{}, fmt.Errorf("creating %s: %w", dir, err)
	}
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Files{}, err
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "datavolume-cloner clone CA"},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return Files{}, fmt.Errorf("creating CA: %w", err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return Files{}, err
	}
	files := InDir(dir)
	if err := writePEM(files.CA, "CERTIFICATE", caDER, 0o644); err != nil {
		return Files{}, err
	}
	server := &x509.Certificate{
		Subject:     pkix.Name{CommonName: hosts[0]},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			server.IPAddresses = append(server.IPAddresses, ip)
		} else {
			server.DNSNames = append(server.DNSNames, h)
		}
	}
	client := &x509.Certificate{
		Subject:     pkix.Name{CommonName: "datavolume-cloner clone source"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	for _, leaf := range []struct {
		tmpl          *x509.Certificate
		certFile, key string
	}{{server, files.ServerCert, files.ServerKey}, {client, files.ClientCert, files.ClientKey}} {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return Files{}, err
		}
		leaf.tmpl.SerialNumber = serial()
		leaf.tmpl.NotBefore, leaf.tmpl.NotAfter = now.Add(-time.Minute), now.Add(validity)
		leaf.tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		der, err := x509.CreateCertificate(rand.Reader, leaf.tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			return Files{}, fmt.Errorf("signing certificate: %w", err)
		}
		keyDER, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return Files{}, err
		}
		if err := writePEM(leaf.certFile, "CERTIFICATE", der, 0o644); err != nil {
			return Files{}, err
		}
		if err := writePEM(leaf.key, "PRIVATE KEY", keyDER, 0o600); err != nil {
			return Files{}, err
		}
	}
	return files, nil
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	return n
}

func writePEM(path, typ string, der []byte, mode os.FileMode) error {
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), mode); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

func loadPool(caFile string) (*x509.CertPool, error) {
	data, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("reading CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("CA file %s holds no PEM certificate", caFile)
	}
	return pool, nil
}

// SystemPoolWith is the system's trusted roots plus the certificates of
// caPath: what a source server (HTTPS, registry) with a custom CA needs.
// caPath is a PEM file or a directory, such as a ConfigMap mounted whole,
// whose every PEM file is trusted whatever its name; Kubernetes' own
// entries of a mounted volume ("..data" and the like) are skipped.
func SystemPoolWith(caPath string) (*x509.CertPool, error) {
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	fi, err := os.Stat(caPath)
	if err != nil {
		return nil, fmt.Errorf("reading CA: %w", err)
	}
	if !fi.IsDir() {
		data, err := os.ReadFile(caPath)
		if err != nil {
			return nil, fmt.Errorf("reading CA file: %w", err)
		}
		if !pool.AppendCertsFromPEM(data) {
			return nil, fmt.Errorf("CA file %s holds no PEM certificate", caPath)
		}
		return pool, nil
	}
	files, err := VolumeFiles(caPath)
	if err != nil {
		return nil, fmt.Errorf("reading CA directory: %w", err)
	}
	found := false
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("reading CA file: %w", err)
		}
		found = pool.AppendCertsFromPEM(data) || found
	}
	if !found {
		return nil, fmt.Errorf("CA directory %s holds no PEM certificate", caPath)
	}
	return pool, nil
}

// VolumeFiles lists the regular files of a directory, such as a mounted
// ConfigMap or Secret, sorted by name. Symlinks are followed (a mounted
// key is a symlink into the volume's current data); names starting with
// ".." (Kubernetes' "..data" and timestamped directories) and
// subdirectories are skipped.
func VolumeFiles(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var files []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "..") {
			continue
		}
		p := filepath.Join(dir, e.Name())
		fi, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		if fi.Mode().IsRegular() {
			files = append(files, p)
		}
	}
	return files, nil
}

// ServerConfig accepts only clients with a certificate signed by caFile;
// with caFile empty, clients are not asked for certificates.
func ServerConfig(certFile, keyFile, caFile string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("loading server certificate: %w", err)
	}
	if caFile == "" {
		return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
	}
	pool, err := loadPool(caFile)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
		MinVersion:   tls.VersionTLS13,
	}, nil
}

// ClientConfig presents the client certificate and trusts only caFile
// for the server, whose certificate must name serverName.
func ClientConfig(certFile, keyFile, caFile, serverName string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("loading client certificate: %w", err)
	}
	pool, err := loadPool(caFile)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		RootCAs:      pool,
		ServerName:   serverName,
		MinVersion:   tls.VersionTLS13,
	}, nil
}
