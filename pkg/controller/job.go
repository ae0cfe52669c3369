package controller

import (
	"fmt"
	"net/url"
	"path"
	"strconv"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/datavolume/datavolume/pkg/apis/cdi"
	"github.com/datavolume/datavolume/pkg/apis/cdi/v1beta1"
	"github.com/datavolume/datavolume/pkg/claims"
	"github.com/datavolume/datavolume/pkg/cloner/exitcode"
	"github.com/datavolume/datavolume/pkg/plan"
)

// Where the data-moving container finds its volumes.
const (
	targetMountPath   = "/data"
	targetDevicePath  = "/dev/cdi-block-volume"
	sourceMountPath   = "/source"
	sourceDevicePath  = "/dev/cdi-block-source"
	scratchMountPath  = "/scratch"
	certsMountPath    = "/certs"
	secretMountPath   = "/secret"
	headersMountPath  = "/extra-headers"
	tmpMountPath      = "/tmp"
	diskImageFileName = "disk.img"
)

// qemuUser is CDI's qemu user and group (107): the disk belongs to it, so a
// VM can use it, and the pods moving the data run as it.
const qemuUser = 107

// JobOptions are the settings of every data-moving Job.
type JobOptions struct {
	// Image is the datavolume-cloner image.
	Image string
	// PullPolicy is the image's pull policy.
	PullPolicy corev1.PullPolicy
	// MetricsPort is where the cloner serves its progress.
	MetricsPort int32
	// BackoffLimit is how many failed pods a Job retries.
	BackoffLimit int32
	// InsecureRegistries are registries (host:port, or a host for all its
	// ports) reached over plain HTTP or unverified TLS.
	InsecureRegistries []string
	// FilesystemOverhead sizes disk images in Filesystem volumes.
	FilesystemOverhead plan.FilesystemOverhead
	// Resources of the cloner container.
	Resources corev1.ResourceRequirements
}

// jobInput is what one Job is rendered from.
type jobInput struct {
	dv      *v1beta1.DataVolume
	spec    *cdi.DataVolumeSpec
	plan    *plan.Plan
	claim   *corev1.PersistentVolumeClaim
	source  *corev1.PersistentVolumeClaim
	scratch bool
	opts    *JobOptions
}

// jobName is the name of the Job that moves dv's data: importer-<dv> for
// imports and blanks (with -scratch once it needs scratch space),
// cloner-<dv> for clones, upload-<dv> for uploads.
func jobName(p *plan.Plan, dvName string, scratch bool) string {
	prefix := "importer"
	switch p.Command {
	case plan.CommandClone:
		prefix = "cloner"
	case plan.CommandUpload:
		prefix = "upload"
	}
	if scratch && p.Command == plan.CommandImport {
		prefix += "-scratch"
	}
	return childName(prefix, dvName)
}

// renderJob is the Job that runs the cloner for a DataVolume: never two
// writers on one volume (a failed pod is replaced only once it is gone), a
// bounded number of retries, and exit codes that mean "do not retry" failing
// the Job at once. Its pod passes the restricted Pod Security level.
func renderJob(in jobInput) (*batchv1.Job, error) {
	args, err := clonerArgs(in)
	if err != nil {
		return nil, err
	}
	volumes, mounts, devices := jobVolumes(in)
	labels := map[string]string{LabelManagedBy: ManagedBy, LabelDataVolumeUID: string(in.dv.UID)}
	pod := corev1.PodSpec{
		RestartPolicy:                 corev1.RestartPolicyNever,
		AutomountServiceAccountToken:  ptr.To(false),
		EnableServiceLinks:            ptr.To(false),
		PriorityClassName:             in.spec.PriorityClassName,
		TerminationGracePeriodSeconds: ptr.To[int64](10),
		SecurityContext: &corev1.PodSecurityContext{
			RunAsNonRoot:        ptr.To(true),
			RunAsUser:           ptr.To[int64](qemuUser),
			RunAsGroup:          ptr.To[int64](qemuUser),
			FSGroup:             ptr.To[int64](qemuUser),
			FSGroupChangePolicy: ptr.To(corev1.FSGroupChangeOnRootMismatch),
			SeccompProfile:      &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
		Containers: []corev1.Container{{
			Name:                     clonerContainer,
			Image:                    in.opts.Image,
			ImagePullPolicy:          in.opts.PullPolicy,
			Args:                     args,
			Env:                      []corev1.EnvVar{{Name: "TMPDIR", Value: tmpMountPath}},
			Ports:                    ports(in),
			Resources:                in.opts.Resources,
			VolumeMounts:             mounts,
			VolumeDevices:            devices,
			TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
			SecurityContext: &corev1.SecurityContext{
				AllowPrivilegeEscalation: ptr.To(false),
				ReadOnlyRootFilesystem:   ptr.To(true),
				Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			},
		}},
		Volumes: volumes,
	}
	permanent := []int32{exitcode.Usage, exitcode.Permanent, exitcode.NeedsScratch}
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{
			Name:            jobName(in.plan, in.dv.Name, in.scratch),
			Namespace:       in.dv.Namespace,
			Labels:          labels,
			OwnerReferences: []metav1.OwnerReference{ownerReference(in.dv)},
		},
		Spec: batchv1.JobSpec{
			BackoffLimit:         ptr.To(in.opts.BackoffLimit),
			PodReplacementPolicy: ptr.To(batchv1.Failed),
			PodFailurePolicy: &batchv1.PodFailurePolicy{Rules: []batchv1.PodFailurePolicyRule{
				{
					Action: batchv1.PodFailurePolicyActionFailJob,
					OnExitCodes: &batchv1.PodFailurePolicyOnExitCodesRequirement{
						ContainerName: ptr.To(clonerContainer),
						Operator:      batchv1.PodFailurePolicyOnExitCodesOpIn,
						Values:        permanent,
					},
				},
				{
					// A pod evicted or preempted is not the data's fault.
					Action: batchv1.PodFailurePolicyActionIgnore,
					OnPodConditions: []batchv1.PodFailurePolicyOnPodConditionsPattern{
						{Type: corev1.DisruptionTarget, Status: corev1.ConditionTrue},
					},
				},
			}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       pod,
			},
		},
	}
	return job, nil
}

// targetPath is where the cloner writes, by the claim's own volume mode: the disk image file of a
// Filesystem volume, the directory an archive is extracted into, or the
// block device.
func targetPath(p *plan.Plan, claim *corev1.PersistentVolumeClaim) string {
	switch {
	case claims.VolumeMode(claim) == corev1.PersistentVolumeBlock:
		return targetDevicePath
	case p.ContentType == cdi.DataVolumeArchive:
		return targetMountPath
	default:
		return path.Join(targetMountPath, diskImageFileName)
	}
}

// sourcePath is where a clone reads: as targetPath, for the source claim.
func sourcePath(contentType cdi.DataVolumeContentType, source *corev1.PersistentVolumeClaim) string {
	switch {
	case claims.VolumeMode(source) == corev1.PersistentVolumeBlock:
		return sourceDevicePath
	case contentType == cdi.DataVolumeArchive:
		return sourceMountPath
	default:
		return path.Join(sourceMountPath, diskImageFileName)
	}
}

// targetSize is the usable size of the claim for a disk image, given to the
// cloner; empty for a Block volume, whose device has its own size.
func targetSize(claim *corev1.PersistentVolumeClaim, overhead plan.FilesystemOverhead) string {
	if claims.VolumeMode(claim) == corev1.PersistentVolumeBlock {
		return ""
	}
	size := claims.Size(claim)
	usable := plan.UsableSize(size.Value(), corev1.PersistentVolumeFilesystem, overhead)
	return resource.NewQuantity(usable, resource.BinarySI).String()
}

func clonerArgs(in jobInput) ([]string, error) {
	p := in.plan
	args := []string{string(p.Command)}
	add := func(flag, value string) {
		if value != "" {
			args = append(args, "--"+flag+"="+value)
		}
	}
	switch p.Command {
	case plan.CommandImport:
		if p.Kind == plan.SourceRegistry {
			reg := in.spec.Source.Registry
			add("url", reg.URL)
			if isInsecureRegistry(reg.URL, in.opts.InsecureRegistries) {
				args = append(args, "--insecure-registry")
			}
			if reg.CertConfigMap != "" {
				add("ca-file", certsMountPath)
			}
			if reg.SecretRef != "" {
				add("username-file", path.Join(secretMountPath, "accessKeyId"))
				add("password-file", path.Join(secretMountPath, "secretKey"))
			}
		} else {
			h := in.spec.Source.HTTP
			add("url", h.URL)
			if h.CertConfigMap != "" {
				add("ca-file", certsMountPath)
			}
			if h.SecretRef != "" {
				add("username-file", path.Join(secretMountPath, "accessKeyId"))
				add("password-file", path.Join(secretMountPath, "secretKey"))
			}
			add("checksum", h.Checksum)
			for _, header := range h.ExtraHeaders {
				add("extra-header", header)
			}
			for i := range h.SecretExtraHeaders {
				add("secret-extra-headers-dir", path.Join(headersMountPath, strconv.Itoa(i)))
			}
		}
		add("content-type", string(p.ContentType))
		add("target", targetPath(p, in.claim))
		add("target-size", targetSize(in.claim, in.opts.FilesystemOverhead))
		if in.scratch {
			add("scratch", scratchMountPath)
		}
	case plan.CommandBlank:
		add("target", targetPath(p, in.claim))
		add("target-size", targetSize(in.claim, in.opts.FilesystemOverhead))
	case plan.CommandUpload:
		args = append(args, uploadArgs(in.dv)...)
		add("content-type", string(p.ContentType))
		add("target", targetPath(p, in.claim))
		add("target-size", targetSize(in.claim, in.opts.FilesystemOverhead))
		if in.scratch {
			add("scratch", scratchMountPath)
		}
	case plan.CommandClone:
		if in.source == nil {
			return nil, fmt.Errorf("clone of %s without its source claim", in.dv.Name)
		}
		add("source", sourcePath(p.ContentType, in.source))
		add("content-type", string(p.ContentType))
		add("target", targetPath(p, in.claim))
		add("target-size", targetSize(in.claim, in.opts.FilesystemOverhead))
	default:
		return nil, fmt.Errorf("no Job runs %q", p.Command)
	}
	add("metrics-address", ":"+strconv.Itoa(int(in.opts.MetricsPort)))
	add("owner-uid", string(in.dv.UID))
	return args, nil
}

func isInsecureRegistry(raw string, insecure []string) bool {
	u, err := url.Parse(raw)
	if err != nil {
		return false
	}
	for _, host := range insecure {
		// host:port names one registry; a bare host, every port of it.
		if u.Host == host || u.Hostname() == host {
			return true
		}
	}
	return false
}

// jobVolumes are the pod's volumes: the target claim, the source claim of a
// clone (read-only), scratch space as a generic ephemeral volume (removed
// with the pod), the CA bundle, credentials and header Secrets, and /tmp.
func jobVolumes(in jobInput) ([]corev1.Volume, []corev1.VolumeMount, []corev1.VolumeDevice) {
	var (
		volumes []corev1.Volume
		mounts  []corev1.VolumeMount
		devices []corev1.VolumeDevice
	)
	claimVolume := func(name, claim string, readOnly bool, mode corev1.PersistentVolumeMode, mountPath, devicePath string) {
		volumes = append(volumes, corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{
			PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claim, ReadOnly: readOnly},
		}})
		if mode == corev1.PersistentVolumeBlock {
			devices = append(devices, corev1.VolumeDevice{Name: name, DevicePath: devicePath})
		} else {
			mounts = append(mounts, corev1.VolumeMount{Name: name, MountPath: mountPath, ReadOnly: readOnly})
		}
	}
	claimVolume("target", in.claim.Name, false, claims.VolumeMode(in.claim), targetMountPath, targetDevicePath)
	if in.plan.Command == plan.CommandClone && in.source != nil {
		claimVolume("source", in.source.Name, true, claims.VolumeMode(in.source), sourceMountPath, sourceDevicePath)
	}
	volumes = append(volumes, corev1.Volume{Name: "tmp", VolumeSource: corev1.VolumeSource{
		EmptyDir: &corev1.EmptyDirVolumeSource{SizeLimit: ptr.To(resource.MustParse("64Mi"))},
	}})
	mounts = append(mounts, corev1.VolumeMount{Name: "tmp", MountPath: tmpMountPath})
	if in.scratch {
		volumes = append(volumes, corev1.Volume{Name: "scratch", VolumeSource: corev1.VolumeSource{
			Ephemeral: &corev1.EphemeralVolumeSource{VolumeClaimTemplate: &corev1.PersistentVolumeClaimTemplate{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{LabelManagedBy: ManagedBy, LabelDataVolumeUID: string(in.dv.UID)}},
				Spec: corev1.PersistentVolumeClaimSpec{
					AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
					StorageClassName: in.claim.Spec.StorageClassName,
					VolumeMode:       ptr.To(corev1.PersistentVolumeFilesystem),
					Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{
						corev1.ResourceStorage: scratchSize(in.claim),
					}},
				},
			}},
		}})
		mounts = append(mounts, corev1.VolumeMount{Name: "scratch", MountPath: scratchMountPath})
	}
	if in.plan.Command == plan.CommandUpload {
		volumes = append(volumes, corev1.Volume{Name: "upload-tls", VolumeSource: corev1.VolumeSource{
			Secret: &corev1.SecretVolumeSource{SecretName: uploadServiceName(in.dv)},
		}})
		mounts = append(mounts, corev1.VolumeMount{Name: "upload-tls", MountPath: uploadTLSPath, ReadOnly: true})
	}
	var certConfigMap, secret string
	var headerSecrets []string
	switch {
	case in.spec.Source == nil:
	case in.spec.Source.HTTP != nil:
		certConfigMap, secret, headerSecrets = in.spec.Source.HTTP.CertConfigMap, in.spec.Source.HTTP.SecretRef, in.spec.Source.HTTP.SecretExtraHeaders
	case in.spec.Source.Registry != nil:
		certConfigMap, secret = in.spec.Source.Registry.CertConfigMap, in.spec.Source.Registry.SecretRef
	}
	if certConfigMap != "" {
		volumes = append(volumes, corev1.Volume{Name: "certs", VolumeSource: corev1.VolumeSource{
			ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: certConfigMap}},
		}})
		mounts = append(mounts, corev1.VolumeMount{Name: "certs", MountPath: certsMountPath, ReadOnly: true})
	}
	if secret != "" {
		volumes = append(volumes, corev1.Volume{Name: "secret", VolumeSource: corev1.VolumeSource{
			Secret: &corev1.SecretVolumeSource{SecretName: secret},
		}})
		mounts = append(mounts, corev1.VolumeMount{Name: "secret", MountPath: secretMountPath, ReadOnly: true})
	}
	for i, name := range headerSecrets {
		volume := "headers-" + strconv.Itoa(i)
		volumes = append(volumes, corev1.Volume{Name: volume, VolumeSource: corev1.VolumeSource{
			Secret: &corev1.SecretVolumeSource{SecretName: name},
		}})
		mounts = append(mounts, corev1.VolumeMount{Name: volume, MountPath: path.Join(headersMountPath, strconv.Itoa(i)), ReadOnly: true})
	}
	return volumes, mounts, devices
}

// scratchSize is the target claim's size: scratch holds the image before it
// is converted into the target, and is never larger than what it becomes.
func scratchSize(claim *corev1.PersistentVolumeClaim) resource.Quantity {
	return claim.Spec.Resources.Requests[corev1.ResourceStorage]
}

// ports are the container's: progress metrics, and an upload server's HTTPS.
func ports(in jobInput) []corev1.ContainerPort {
	out := []corev1.ContainerPort{{Name: "metrics", ContainerPort: in.opts.MetricsPort, Protocol: corev1.ProtocolTCP}}
	if in.plan.Command == plan.CommandUpload {
		out = append(out, corev1.ContainerPort{Name: "https", ContainerPort: uploadPort, Protocol: corev1.ProtocolTCP})
	}
	return out
}
