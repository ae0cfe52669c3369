package controller

import (
	"fmt"
	"os"
	"path"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/datavolume/datavolume/pkg/apis/cdi/v1beta1"
	"github.com/datavolume/datavolume/pkg/cloner/certs"
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

// renderUploadSecret is the upload server's TLS material: a CA made for this
// upload and a server certificate for its Service, signed by it. Its client
// CA is that same CA, whose key is thrown away, so no client gets in until
// the upload path presents a certificate of the cluster's upload CA
// (datavolumes/upload, which is not served yet): it fails closed.
func renderUploadSecret(dv *v1beta1.DataVolume) (*corev1.Secret, error) {
	dir, err := os.MkdirTemp("", "upload-tls-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	name := uploadServiceName(dv)
	files, err := certs.Generate(dir, []string{name + "." + dv.Namespace + ".svc", name + "." + dv.Namespace + ".svc.cluster.local"}, 7*24*3600e9)
	if err != nil {
		return nil, fmt.Errorf("making the upload server's certificate: %w", err)
	}
	data := map[string][]byte{}
	for key, file := range map[string]string{"ca.crt": files.CA, corev1.TLSCertKey: files.ServerCert, corev1.TLSPrivateKeyKey: files.ServerKey} {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, err
		}
		data[key] = b
	}
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: dv.Namespace,
			Labels:          map[string]string{LabelManagedBy: ManagedBy, LabelDataVolumeUID: string(dv.UID)},
			OwnerReferences: []metav1.OwnerReference{ownerReference(dv)},
		},
		Type: corev1.SecretTypeTLS,
		Data: data,
	}, nil
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
