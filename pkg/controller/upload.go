package controller

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"path"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/datavolume/datavolume/pkg/apis/cdi/v1beta1"
)

// The upload server of an upload DataVolume listens here, behind a Service
// named like its Job.
const (
	uploadPort        = 8443
	uploadTLSPath     = "/var/run/upload-tls"
	uploadServicePort = 443
)

// uploadServiceName names the Service (and the Secret) of dv's upload
// server: upload-<dv>, a DNS label.
func uploadServiceName(dv *v1beta1.DataVolume) string { return childName("upload", dv.Name) }

// renderUploadSecret is the upload server's TLS material, made in memory
// (the controller's root filesystem is read-only): a CA made for this
// upload, whose key is thrown away, and a server certificate for its
// Service signed by it. The server's client CA is that same CA, so no
// client gets in until the upload path presents a certificate of the
// cluster's upload CA (datavolumes/upload, not served yet): it fails closed.
func renderUploadSecret(dv *v1beta1.DataVolume) (*corev1.Secret, error) {
	name := uploadServiceName(dv)
	caPEM, certPEM, keyPEM, err := uploadCertificates([]string{
		name + "." + dv.Namespace + ".svc", name + "." + dv.Namespace + ".svc.cluster.local"}, 7*24*time.Hour)
	if err != nil {
		return nil, fmt.Errorf("making the upload server's certificate: %w", err)
	}
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: dv.Namespace,
			Labels:          map[string]string{LabelManagedBy: ManagedBy, LabelDataVolumeUID: string(dv.UID)},
			OwnerReferences: []metav1.OwnerReference{ownerReference(dv)},
		},
		Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{"ca.crt": caPEM, corev1.TLSCertKey: certPEM, corev1.TLSPrivateKeyKey: keyPEM},
	}, nil
}

// uploadCertificates makes a CA and a server certificate for hosts signed
// by it, as PEM.
func uploadCertificates(hosts []string, validity time.Duration) (caPEM, certPEM, keyPEM []byte, err error) {
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, err
	}
	caTemplate := &x509.Certificate{
		SerialNumber: serialNumber(), Subject: pkix.Name{CommonName: "datavolume upload CA"},
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(validity),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTemplate, caTemplate, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, nil, nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, err
	}
	template := &x509.Certificate{
		SerialNumber: serialNumber(), Subject: pkix.Name{CommonName: hosts[0]}, DNSNames: hosts,
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(validity),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, template, caTemplate, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), nil
}

func serialNumber() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}

// renderUploadService reaches dv's upload server pod.
func renderUploadService(dv *v1beta1.DataVolume) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{
			Name: uploadServiceName(dv), Namespace: dv.Namespace,
			Labels:          map[string]string{LabelManagedBy: ManagedBy, LabelDataVolumeUID: string(dv.UID)},
			OwnerReferences: []metav1.OwnerReference{ownerReference(dv)},
		},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{LabelManagedBy: ManagedBy, LabelDataVolumeUID: string(dv.UID)},
			Ports: []corev1.ServicePort{{
				Name: "https", Port: uploadServicePort, TargetPort: intstr.FromInt32(uploadPort), Protocol: corev1.ProtocolTCP,
			}},
		},
	}
}

// uploadArgs are the upload server's flags beyond the target's.
func uploadArgs(dv *v1beta1.DataVolume) []string {
	return []string{
		fmt.Sprintf("--listen=:%d", uploadPort),
		"--tls-cert=" + path.Join(uploadTLSPath, corev1.TLSCertKey),
		"--tls-key=" + path.Join(uploadTLSPath, corev1.TLSPrivateKeyKey),
		"--client-ca=" + path.Join(uploadTLSPath, "ca.crt"),
	}
}
