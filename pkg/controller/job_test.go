package controller

import (
	"crypto/tls"
	"crypto/x509"
	"strings"
	"testing"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
	corev1 "k8s.io/api/core/v1"

	"github.com/datavolume/datavolume/pkg/apis/cdi/v1beta1"
	"github.com/datavolume/datavolume/pkg/plan"
)

var testJobOptions = JobOptions{Image: "cloner:v1", PullPolicy: corev1.PullIfNotPresent, MetricsPort: 8090, BackoffLimit: 3,
	InsecureRegistries: []string{"10.1.2.3:5000"}, FilesystemOverhead: plan.DefaultFilesystemOverhead}

func render(t *testing.T, dv *v1beta1.DataVolume, claim, source *corev1.PersistentVolumeClaim, scratch bool) *podView {
	t.Helper()
	internal, p := planOf(dv)
	job, err := renderJob(jobInput{dv: dv, spec: &internal.Spec, plan: p, claim: claim, source: source, scratch: scratch, opts: &testJobOptions})
	assert.NilError(t, err)
	assert.Equal(t, job.Spec.Template.Spec.RestartPolicy, corev1.RestartPolicyNever)
	return &podView{name: job.Name, spec: job.Spec.Template.Spec, args: strings.Join(job.Spec.Template.Spec.Containers[0].Args, " ")}
}

type podView struct {
	name string
	spec corev1.PodSpec
	args string
}

func (v *podView) volume(name string) *corev1.Volume {
	for i := range v.spec.Volumes {
		if v.spec.Volumes[i].Name == name {
			return &v.spec.Volumes[i]
		}
	}
	return nil
}

func TestImportJobArguments(t *testing.T) {
	dv := importDV("disk")
	dv.Spec.Source.HTTP.SecretRef = "creds"
	dv.Spec.Source.HTTP.CertConfigMap = "ca"
	dv.Spec.Source.HTTP.Checksum = "sha256:" + strings.Repeat("a", 64)
	dv.Spec.Source.HTTP.ExtraHeaders = []string{"X-Trace: 1"}
	dv.Spec.Source.HTTP.SecretExtraHeaders = []string{"token-header"}
	v := render(t, dv, boundClaim(dv, "1Gi", corev1.PersistentVolumeFilesystem), nil, false)
	assert.Equal(t, v.name, "importer-disk")
	// 1 GiB less 5.5% overhead, aligned down to a MiB.
	assert.Equal(t, v.args, "import --url=http://images.example/disk.qcow2 --ca-file=/certs "+
		"--username-file=/secret/accessKeyId --password-file=/secret/secretKey --checksum=sha256:"+strings.Repeat("a", 64)+
		" --extra-header=X-Trace: 1 --secret-extra-headers-dir=/extra-headers/0 --content-type=kubevirt "+
		"--target=/data/disk.img --target-size=967Mi --metrics-address=:8090 --owner-uid=uid-disk")
	assert.Equal(t, v.volume("certs").ConfigMap.Name, "ca")
	assert.Equal(t, v.volume("secret").Secret.SecretName, "creds")
	assert.Equal(t, v.volume("headers-0").Secret.SecretName, "token-header")
	assert.Assert(t, v.volume("scratch") == nil, "no scratch unless needed")
}

func TestRegistryImportGetsScratchAndInsecureHost(t *testing.T) {
	dv := importDV("disk")
	dv.Spec.Source = &v1beta1.DataVolumeSource{Registry: &v1beta1.DataVolumeSourceRegistry{URL: "docker://10.1.2.3:5000/disks/fedora:1"}}
	claim := boundClaim(dv, "1Gi", corev1.PersistentVolumeBlock)
	_, p := planOf(dv)
	assert.Assert(t, p.ScratchUpFront())
	v := render(t, dv, claim, nil, true)
	assert.Assert(t, is.Contains(v.args, "--insecure-registry"))
	assert.Assert(t, is.Contains(v.args, "--target=/dev/cdi-block-volume"))
	assert.Assert(t, !strings.Contains(v.args, "--target-size"), "a device has its own size: %s", v.args)
	assert.Assert(t, is.Contains(v.args, "--scratch=/scratch"))
	scratch := v.volume("scratch")
	assert.Assert(t, scratch != nil && scratch.Ephemeral != nil, "scratch is a generic ephemeral volume")
	size := scratch.Ephemeral.VolumeClaimTemplate.Spec.Resources.Requests[corev1.ResourceStorage]
	assert.Equal(t, size.String(), "1Gi")
	assert.Equal(t, len(v.spec.Containers[0].VolumeDevices), 1)
	assert.Equal(t, v.spec.Containers[0].VolumeDevices[0].DevicePath, "/dev/cdi-block-volume")
}

func TestCloneJobMountsSourceReadOnly(t *testing.T) {
	dv := cloneDV("copy", "disk")
	source := boundClaim(importDV("disk"), "1Gi", corev1.PersistentVolumeBlock)
	v := render(t, dv, boundClaim(dv, "2Gi", corev1.PersistentVolumeFilesystem), source, false)
	assert.Equal(t, v.name, "cloner-copy")
	assert.Equal(t, v.args, "clone --source=/dev/cdi-block-source --content-type=kubevirt --target=/data/disk.img --target-size=1935Mi --metrics-address=:8090 --owner-uid=uid-copy")
	assert.Assert(t, v.volume("source").PersistentVolumeClaim.ReadOnly)
	assert.Equal(t, v.volume("source").PersistentVolumeClaim.ClaimName, "disk")
}

func TestBlankJob(t *testing.T) {
	dv := importDV("empty")
	dv.Spec.Source = &v1beta1.DataVolumeSource{Blank: &v1beta1.DataVolumeBlankImage{}}
	v := render(t, dv, boundClaim(dv, "1Gi", corev1.PersistentVolumeFilesystem), nil, false)
	assert.Equal(t, v.args, "blank --target=/data/disk.img --target-size=967Mi --metrics-address=:8090 --owner-uid=uid-empty")
}

func TestJobPodIsRestricted(t *testing.T) {
	dv := importDV("disk")
	internal, p := planOf(dv)
	job, err := renderJob(jobInput{dv: dv, spec: &internal.Spec, plan: p, claim: boundClaim(dv, "1Gi", corev1.PersistentVolumeFilesystem), opts: &testJobOptions})
	assert.NilError(t, err)
	pod := job.Spec.Template.Spec
	assert.Equal(t, *pod.SecurityContext.RunAsUser, int64(107))
	assert.Equal(t, *pod.SecurityContext.RunAsGroup, int64(107))
	assert.Equal(t, *pod.SecurityContext.FSGroup, int64(107))
	assert.Assert(t, *pod.SecurityContext.RunAsNonRoot)
	assert.Equal(t, pod.SecurityContext.SeccompProfile.Type, corev1.SeccompProfileTypeRuntimeDefault)
	assert.Assert(t, !*pod.AutomountServiceAccountToken)
	c := pod.Containers[0].SecurityContext
	assert.Assert(t, !*c.AllowPrivilegeEscalation)
	assert.Assert(t, *c.ReadOnlyRootFilesystem)
	assert.DeepEqual(t, c.Capabilities.Drop, []corev1.Capability{"ALL"})
	// Never two writers: a failed pod is replaced once it is gone.
	assert.Equal(t, string(*job.Spec.PodReplacementPolicy), "Failed")
	assert.DeepEqual(t, job.Spec.PodFailurePolicy.Rules[0].OnExitCodes.Values, []int32{2, 3, 4})
	assert.Equal(t, job.OwnerReferences[0].UID, dv.UID)
	assert.Assert(t, *job.OwnerReferences[0].Controller)
}

func TestChildNameFitsALabel(t *testing.T) {
	long := strings.Repeat("d", 200)
	name := childName("importer-scratch", long)
	assert.Equal(t, len(name), 63)
	assert.Assert(t, name != childName("importer-scratch", long+"x"), "distinct names stay distinct")
	assert.Equal(t, childName("cloner", "disk"), "cloner-disk")
}

func TestClaimFromStorageGetsDefaultsAndOverhead(t *testing.T) {
	dv := importDV("disk")
	dv.Spec.PVC = nil
	dv.Spec.Storage = &v1beta1.StorageSpec{Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{
		corev1.ResourceStorage: mustQuantity("10Gi")}}}
	dv.Annotations = map[string]string{AnnImmediateBinding: "true"}
	internal, p := planOf(dv)
	size, err := claimSize(p, nil, plan.DefaultFilesystemOverhead)
	assert.NilError(t, err)
	// 10 GiB / 0.945 rounded up to a MiB.
	assert.Equal(t, size.String(), "10836Mi")
	claim := renderClaim(dv, internal, p, size)
	assert.DeepEqual(t, claim.Spec.AccessModes, []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce})
	assert.Equal(t, *claim.Spec.VolumeMode, corev1.PersistentVolumeFilesystem)
	assert.Assert(t, claim.Spec.StorageClassName == nil, "the default class")
	assert.Equal(t, claim.Annotations[AnnContentType], "kubevirt")
	assert.Equal(t, claim.Annotations[AnnCreatedForDataVolume], "uid-disk")
	assert.Equal(t, claim.Annotations[AnnImmediateBinding], "true")
	assert.Equal(t, claim.Labels["team"], "a")
	assert.Assert(t, ownedBy(claim, dv))
}

func TestCloneClaimSizeFromSource(t *testing.T) {
	dv := cloneDV("copy", "disk")
	dv.Spec.PVC = nil
	dv.Spec.Storage = &v1beta1.StorageSpec{}
	_, p := planOf(dv)
	size, err := claimSize(p, boundClaim(importDV("disk"), "2Gi", corev1.PersistentVolumeBlock), plan.DefaultFilesystemOverhead)
	assert.NilError(t, err)
	assert.Equal(t, size.String(), "2168Mi")
	size, err = claimSize(p, boundClaim(importDV("disk"), "2Gi", corev1.PersistentVolumeFilesystem), plan.DefaultFilesystemOverhead)
	assert.NilError(t, err)
	assert.Equal(t, size.String(), "2Gi")
	_, err = claimSize(p, nil, plan.DefaultFilesystemOverhead)
	assert.ErrorContains(t, err, "spec.storage.resources.requests.storage: no size given")
}

func TestUploadJobServesTLSBehindAService(t *testing.T) {
	dv := importDV("up")
	dv.Spec.Source = &v1beta1.DataVolumeSource{Upload: &v1beta1.DataVolumeSourceUpload{}}
	_, p := planOf(dv)
	assert.Assert(t, p.ScratchUpFront(), "every upload is staged")
	v := render(t, dv, boundClaim(dv, "1Gi", corev1.PersistentVolumeFilesystem), nil, true)
	assert.Equal(t, v.name, "upload-up")
	assert.Equal(t, v.args, "upload-server --listen=:8443 --tls-cert=/var/run/upload-tls/tls.crt --tls-key=/var/run/upload-tls/tls.key "+
		"--client-ca=/var/run/upload-tls/ca.crt --content-type=kubevirt --target=/data/disk.img --target-size=967Mi --scratch=/scratch "+
		"--metrics-address=:8090 --owner-uid=uid-up")
	assert.Equal(t, v.volume("upload-tls").Secret.SecretName, "upload-up")

	svc := renderUploadService(dv)
	assert.Equal(t, svc.Name, "upload-up")
	assert.Equal(t, svc.Spec.Selector[LabelDataVolumeUID], "uid-up")
	assert.Equal(t, svc.Spec.Ports[0].TargetPort.IntValue(), 8443)
	secret, err := renderUploadSecret(dv)
	assert.NilError(t, err)
	assert.Equal(t, secret.Type, corev1.SecretTypeTLS)
	pair, err := tls.X509KeyPair(secret.Data["tls.crt"], secret.Data["tls.key"])
	assert.NilError(t, err)
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	assert.NilError(t, err)
	roots := x509.NewCertPool()
	assert.Assert(t, roots.AppendCertsFromPEM(secret.Data["ca.crt"]))
	_, err = leaf.Verify(x509.VerifyOptions{DNSName: "upload-up.ns.svc", Roots: roots})
	assert.NilError(t, err, "the server certificate is the Service's, signed by the CA")
	assert.Assert(t, ownedBy(secret, dv) && ownedBy(svc, dv))
}
