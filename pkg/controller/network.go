package controller

// The fallback of a cross-namespace clone: when the hand-over cannot be
// done (the source namespace's quota refuses the temporary claim) or the
// DataVolume asks for it, two pods move the data over mutual TLS: a
// clone-target in the DataVolume's namespace writing its claim, behind a
// Service, and a clone-source in the source namespace reading the source.
// Each clone gets a CA of its own, made in memory and then forgotten, a
// server certificate for the Service's name and a client certificate, in
// a Secret on each side; they go with the Jobs once the clone is done.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-logr/logr"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/datavolume/datavolume/pkg/apis/cdi"
	"github.com/datavolume/datavolume/pkg/apis/cdi/v1beta1"
)

const (
	// AnnCloneStrategy on a DataVolume asks for a cross-namespace clone's
	// path: "network" for the mutual-TLS pair, otherwise the hand-over.
	AnnCloneStrategy = "datavolume.cdi.kubevirt.io/clone-strategy"
	// CloneStrategyNetwork is the value that asks for the pair.
	CloneStrategyNetwork = "network"
	// annClonePath on the target claim says which path made it.
	annClonePath = "datavolume.cdi.kubevirt.io/clone-path"
	// labelCloneRole tells the pair's pods apart.
	labelCloneRole = "datavolume.cdi.kubevirt.io/clone-role"
	clonePort      = 8443
	cloneTLSPath   = "/var/run/clone-tls"
)

func networkName(dv *v1beta1.DataVolume) string   { return "clone-" + string(dv.UID) }
func sourceJobName(dv *v1beta1.DataVolume) string { return "clone-source-" + string(dv.UID) }
func targetJobName(dv *v1beta1.DataVolume) string { return childName("clone-target", dv.Name) }
func networkHost(dv *v1beta1.DataVolume) string   { return networkName(dv) + "." + dv.Namespace + ".svc" }
func wantsNetwork(dv *v1beta1.DataVolume) bool {
	return dv.Annotations[AnnCloneStrategy] == CloneStrategyNetwork
}
func madeForNetwork(c *corev1.PersistentVolumeClaim) bool {
	return c != nil && c.Annotations[annClonePath] == CloneStrategyNetwork
}

// syncNetworkClone runs the pair once every check has passed (or the pair
// already runs). source is nil when the pair was started before.
func (c *Controller) syncNetworkClone(ctx context.Context, o *observation, internal *cdi.DataVolume, source *corev1.PersistentVolumeClaim) (time.Duration, error) {
	src := o.plan.CloneSource
	if o.claim == nil {
		size, err := claimSize(o.plan, source, c.opts.Jobs.FilesystemOverhead)
		if err != nil {
			o.claimError = &waiting{reason: ReasonClaimNotValid, message: err.Error()}
			return 0, nil
		}
		claim := renderClaim(o.dv, internal, o.plan, size)
		claim.Annotations[annClonePath] = CloneStrategyNetwork
		created, err := c.kube.CoreV1().PersistentVolumeClaims(claim.Namespace).Create(ctx, claim, metav1.CreateOptions{})
		if err != nil {
			return 0, fmt.Errorf("creating PersistentVolumeClaim %s/%s: %w", claim.Namespace, claim.Name, err)
		}
		o.claim = created
	}
	target, err := c.jobs.Jobs(o.dv.Namespace).Get(targetJobName(o.dv))
	if apierrors.IsNotFound(err) {
		target = nil
	} else if err != nil {
		return 0, err
	}
	sourceJob, err := c.jobs.Jobs(src.Namespace).Get(sourceJobName(o.dv))
	if apierrors.IsNotFound(err) {
		sourceJob = nil
	} else if err != nil {
		return 0, err
	}
	if target == nil || sourceJob == nil {
		if source == nil {
			if source, err = c.claims.PersistentVolumeClaims(src.Namespace).Get(src.Name); err != nil {
				return 0, err
			}
		}
		if err := c.startPair(ctx, o, internal, source, target == nil, sourceJob == nil); err != nil {
			return 0, err
		}
		return 0, nil
	}
	o.job = target
	requeue, err := c.observePods(ctx, o)
	if err != nil {
		return 0, err
	}
	if jobFinished(sourceJob, batchv1.JobFailed) && !jobFinished(target, batchv1.JobComplete) {
		msg := "the clone source failed"
		for _, cond := range sourceJob.Status.Conditions {
			if cond.Type == batchv1.JobFailed && cond.Message != "" {
				msg += ": " + cond.Message
			}
		}
		o.fatal = &waiting{reason: reasonError, message: msg}
	}
	if jobFinished(target, batchv1.JobComplete) || jobFinished(target, batchv1.JobFailed) || o.fatal != nil {
		// Certificates and the Service go at once.
		if err := c.deleteNetwork(ctx, o.dv, src.Namespace); err != nil {
			return 0, err
		}
	}
	return requeue, nil
}

// startPair makes the certificates, the Service and the two Jobs.
func (c *Controller) startPair(ctx context.Context, o *observation, internal *cdi.DataVolume, source *corev1.PersistentVolumeClaim, needTarget, needSource bool) error {
	dv, src := o.dv, o.plan.CloneSource
	if err := c.checkLive(ctx, o); err != nil {
		return err
	}
	ca, serverCert, serverKey, clientCert, clientKey, err := pairCertificates([]string{networkHost(dv), networkHost(dv) + ".cluster.local"}, 7*24*time.Hour)
	if err != nil {
		return fmt.Errorf("making the clone's certificates: %w", err)
	}
	labels := map[string]string{LabelManagedBy: ManagedBy, LabelDataVolumeUID: string(dv.UID)}
	secrets := []*corev1.Secret{
		{ObjectMeta: metav1.ObjectMeta{Name: networkName(dv) + "-target", Namespace: dv.Namespace, Labels: labels,
			OwnerReferences: []metav1.OwnerReference{ownerReference(dv)}},
			Data: map[string][]byte{"ca.crt": ca, "tls.crt": serverCert, "tls.key": serverKey}},
		{ObjectMeta: metav1.ObjectMeta{Name: networkName(dv) + "-source", Namespace: src.Namespace, Labels: labels,
			Annotations: map[string]string{AnnDataVolume: dv.Namespace + "/" + dv.Name}},
			Data: map[string][]byte{"ca.crt": ca, "tls.crt": clientCert, "tls.key": clientKey}},
	}
	// A pair is always started with one fresh CA: replace what an earlier
	// attempt left.
	for _, s := range secrets {
		if err := c.kube.CoreV1().Secrets(s.Namespace).Delete(ctx, s.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("replacing Secret %s/%s: %w", s.Namespace, s.Name, err)
		}
		if _, err := c.kube.CoreV1().Secrets(s.Namespace).Create(ctx, s, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("creating Secret %s/%s: %w", s.Namespace, s.Name, err)
		}
	}
	targetLabels := map[string]string{LabelManagedBy: ManagedBy, LabelDataVolumeUID: string(dv.UID), labelCloneRole: "target"}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: networkName(dv), Namespace: dv.Namespace, Labels: labels,
			OwnerReferences: []metav1.OwnerReference{ownerReference(dv)}},
		Spec: corev1.ServiceSpec{Selector: targetLabels, Ports: []corev1.ServicePort{{
			Name: "clone", Port: clonePort, TargetPort: intstr.FromInt32(clonePort), Protocol: corev1.ProtocolTCP}}},
	}
	if _, err := c.kube.CoreV1().Services(svc.Namespace).Create(ctx, svc, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating Service %s/%s: %w", svc.Namespace, svc.Name, err)
	}
	tlsArgs := []string{"--tls-cert=" + path.Join(cloneTLSPath, "tls.crt"), "--tls-key=" + path.Join(cloneTLSPath, "tls.key"),
		"--tls-ca=" + path.Join(cloneTLSPath, "ca.crt")}
	if needTarget {
		job, err := renderJob(jobInput{dv: dv, spec: &internal.Spec, plan: o.plan, claim: o.claim, source: source, opts: &c.opts.Jobs})
		if err != nil {
			return err
		}
		job.Name = targetJobName(dv)
		pod := &job.Spec.Template
		pod.Labels = targetLabels
		podSpec := &pod.Spec
		// The target's own volumes only: the source is in another namespace.
		dropVolume(podSpec, "source")
		ctr := &podSpec.Containers[0]
		ctr.Args = append([]string{"clone-target", "--listen=:" + strconv.Itoa(clonePort)}, withoutFlag(ctr.Args[1:], "--source=")...)
		ctr.Args = append(ctr.Args, tlsArgs...)
		ctr.Ports = append(ctr.Ports, corev1.ContainerPort{Name: "clone", ContainerPort: clonePort, Protocol: corev1.ProtocolTCP})
		addTLSVolume(podSpec, networkName(dv)+"-target")
		if _, err := c.kube.BatchV1().Jobs(job.Namespace).Create(ctx, job, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating Job %s/%s: %w", job.Namespace, job.Name, err)
		}
	}
	if needSource {
		job, err := renderJob(jobInput{dv: dv, spec: &internal.Spec, plan: o.plan, claim: o.claim, source: source, opts: &c.opts.Jobs})
		if err != nil {
			return err
		}
		job.Name, job.Namespace, job.OwnerReferences = sourceJobName(dv), src.Namespace, nil
		job.Annotations = map[string]string{AnnDataVolume: dv.Namespace + "/" + dv.Name}
		podSpec := &job.Spec.Template.Spec
		dropVolume(podSpec, "target")
		ctr := &podSpec.Containers[0]
		ctr.Args = []string{"clone-source", "--source=" + sourcePath(o.plan.ContentType, source),
			"--content-type=" + string(o.plan.ContentType), "--target-address=" + networkHost(dv) + ":" + strconv.Itoa(clonePort),
			"--metrics-address=:" + strconv.Itoa(int(c.opts.Jobs.MetricsPort)), "--owner-uid=" + string(dv.UID)}
		ctr.Args = append(ctr.Args, tlsArgs...)
		addTLSVolume(podSpec, networkName(dv)+"-source")
		if _, err := c.kube.BatchV1().Jobs(job.Namespace).Create(ctx, job, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating Job %s/%s: %w", job.Namespace, job.Name, err)
		}
	}
	logr.FromContextOrDiscard(ctx).Info("Started the clone pair", "source", src.String(), "service", networkHost(dv))
	return nil
}

// deleteNetwork removes the Service and both Secrets.
func (c *Controller) deleteNetwork(ctx context.Context, dv *v1beta1.DataVolume, sourceNamespace string) error {
	for _, s := range []struct{ ns, name string }{{dv.Namespace, networkName(dv) + "-target"}, {sourceNamespace, networkName(dv) + "-source"}} {
		if err := c.kube.CoreV1().Secrets(s.ns).Delete(ctx, s.name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("deleting Secret %s/%s: %w", s.ns, s.name, err)
		}
	}
	if err := c.kube.CoreV1().Services(dv.Namespace).Delete(ctx, networkName(dv), metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting Service %s/%s: %w", dv.Namespace, networkName(dv), err)
	}
	return nil
}

func addTLSVolume(pod *corev1.PodSpec, secret string) {
	pod.Volumes = append(pod.Volumes, corev1.Volume{Name: "clone-tls", VolumeSource: corev1.VolumeSource{
		Secret: &corev1.SecretVolumeSource{SecretName: secret}}})
	pod.Containers[0].VolumeMounts = append(pod.Containers[0].VolumeMounts, corev1.VolumeMount{Name: "clone-tls", MountPath: cloneTLSPath, ReadOnly: true})
}

// dropVolume removes the volume name and its mounts from the pod: each of
// the pair mounts only its own side.
func dropVolume(pod *corev1.PodSpec, name string) {
	pod.Volumes = slices.DeleteFunc(pod.Volumes, func(v corev1.Volume) bool { return v.Name == name })
	for i := range pod.Containers {
		c := &pod.Containers[i]
		c.VolumeMounts = slices.DeleteFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == name })
		c.VolumeDevices = slices.DeleteFunc(c.VolumeDevices, func(d corev1.VolumeDevice) bool { return d.Name == name })
	}
}

func withoutFlag(args []string, prefix string) []string {
	return slices.DeleteFunc(slices.Clone(args), func(a string) bool { return strings.HasPrefix(a, prefix) })
}

// pairCertificates makes a CA, a server certificate for hosts and a client
// certificate, signed by it, as PEM; the CA's key is not kept.
func pairCertificates(hosts []string, validity time.Duration) (ca, serverCert, serverKey, clientCert, clientKey []byte, err error) {
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, nil, nil, err
	}
	caTemplate := &x509.Certificate{
		SerialNumber: serialNumber(), Subject: pkix.Name{CommonName: "datavolume clone CA"},
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(validity),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTemplate, caTemplate, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, nil, nil, nil, nil, err
	}
	leaf := func(cn string, dns []string, usage x509.ExtKeyUsage) ([]byte, []byte, error) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, nil, err
		}
		template := &x509.Certificate{
			SerialNumber: serialNumber(), Subject: pkix.Name{CommonName: cn}, DNSNames: dns,
			NotBefore: now.Add(-time.Minute), NotAfter: now.Add(validity),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		}
		der, err := x509.CreateCertificate(rand.Reader, template, caTemplate, &key.PublicKey, caKey)
		if err != nil {
			return nil, nil, err
		}
		keyDER, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return nil, nil, err
		}
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), nil
	}
	if serverCert, serverKey, err = leaf(hosts[0], hosts, x509.ExtKeyUsageServerAuth); err != nil {
		return nil, nil, nil, nil, nil, err
	}
	if clientCert, clientKey, err = leaf("datavolume clone source", nil, x509.ExtKeyUsageClientAuth); err != nil {
		return nil, nil, nil, nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), serverCert, serverKey, clientCert, clientKey, nil
}
