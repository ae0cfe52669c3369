package cdi

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// DataVolume is a request to populate a PersistentVolumeClaim with a VM disk:
// imported over HTTP or from a registry, uploaded, cloned from another PVC or
// left blank.
type DataVolume struct {
	metav1.TypeMeta
	metav1.ObjectMeta

	Spec   DataVolumeSpec
	Status DataVolumeStatus
}

// DataVolumeSpec says where the data comes from and what volume receives it.
type DataVolumeSpec struct {
	// Source is where the data comes from; exactly one member is set.
	Source *DataVolumeSource
	// PVC is the claim to create, as given (exactly one of PVC and Storage).
	PVC *corev1.PersistentVolumeClaimSpec
	// Storage is the claim to create, with unset fields filled from defaults.
	Storage *StorageSpec
	// PriorityClassName is given to the pods that move the data.
	PriorityClassName string
	// ContentType is kubevirt (a disk image) or archive (a tar extracted into
	// a filesystem volume).
	ContentType DataVolumeContentType
	// Preallocation asks for the whole volume to be allocated up front.
	Preallocation *bool
}

// StorageSpec is a PersistentVolumeClaimSpec whose unset fields are filled
// from defaults (for a clone, the size comes from the source).
type StorageSpec struct {
	AccessModes      []corev1.PersistentVolumeAccessMode
	Selector         *metav1.LabelSelector
	Resources        corev1.VolumeResourceRequirements
	VolumeName       string
	StorageClassName *string
	VolumeMode       *corev1.PersistentVolumeMode
	DataSource       *corev1.TypedLocalObjectReference
	DataSourceRef    *corev1.TypedObjectReference
}

// DataVolumeContentType is the kind of content a DataVolume holds.
type DataVolumeContentType string

const (
	// DataVolumeKubeVirt is a VM disk image (qcow2 or raw, maybe compressed).
	DataVolumeKubeVirt DataVolumeContentType = "kubevirt"
	// DataVolumeArchive is a tar archive extracted into a filesystem volume.
	DataVolumeArchive DataVolumeContentType = "archive"
)

// DataVolumeSource is where the data comes from. Exactly one member is set.
type DataVolumeSource struct {
	HTTP     *DataVolumeSourceHTTP
	Registry *DataVolumeSourceRegistry
	PVC      *DataVolumeSourcePVC
	Upload   *DataVolumeSourceUpload
	Blank    *DataVolumeBlankImage
}

// DataVolumeSourceHTTP imports an image over HTTP or HTTPS.
type DataVolumeSourceHTTP struct {
	// URL of the image.
	URL string
	// SecretRef names a Secret with keys accessKeyId and secretKey (basic auth).
	SecretRef string
	// CertConfigMap names a ConfigMap holding the CA bundle of the server.
	CertConfigMap string
	// ExtraHeaders are sent with every request.
	ExtraHeaders []string
	// SecretExtraHeaders name Secrets whose values are sent as headers.
	SecretExtraHeaders []string
	// Checksum is algorithm:hex over the downloaded bytes (md5, sha1, sha256, sha512).
	Checksum string
}

// RegistryPullMethod says who pulls a registry image.
type RegistryPullMethod string

const (
	// RegistryPullPod pulls the image in the importer pod.
	RegistryPullPod RegistryPullMethod = "pod"
	// RegistryPullNode lets the node's container runtime pull the image.
	RegistryPullNode RegistryPullMethod = "node"
)

// DataVolumeSourceRegistry imports the disk in the /disk directory of a
// container image.
type DataVolumeSourceRegistry struct {
	// URL is docker://host/repo:tag or oci-archive://path.
	URL string
	// PullMethod is pod (default) or node.
	PullMethod RegistryPullMethod
	// SecretRef names a Secret with the registry credentials.
	SecretRef string
	// CertConfigMap names a ConfigMap holding the CA bundle of the registry.
	CertConfigMap string
}

// DataVolumeSourcePVC clones an existing PersistentVolumeClaim.
type DataVolumeSourcePVC struct {
	// Namespace of the source claim.
	Namespace string
	// Name of the source claim.
	Name string
}

// DataVolumeSourceUpload waits for an image to be uploaded.
type DataVolumeSourceUpload struct{}

// DataVolumeBlankImage creates an empty disk image.
type DataVolumeBlankImage struct{}

// DataVolumeStatus is what the controller has done so far.
type DataVolumeStatus struct {
	// ClaimName is the PersistentVolumeClaim that holds the data.
	ClaimName string
	// Phase is where the DataVolume is in its life.
	Phase DataVolumePhase
	// Progress is "NN.NN%" or "N/A".
	Progress DataVolumeProgress
	// RestartCount counts restarts of the pod moving the data.
	RestartCount int32
	// Conditions are Bound, Running and Ready.
	Conditions []DataVolumeCondition
}

// DataVolumePhase is a phase of a DataVolume's life.
type DataVolumePhase string

// The phases of a DataVolume.
const (
	PhaseUnset           DataVolumePhase = ""
	Pending              DataVolumePhase = "Pending"
	WaitForFirstConsumer DataVolumePhase = "WaitForFirstConsumer"
	PVCBound             DataVolumePhase = "PVCBound"
	ImportScheduled      DataVolumePhase = "ImportScheduled"
	ImportInProgress     DataVolumePhase = "ImportInProgress"
	CloneScheduled       DataVolumePhase = "CloneScheduled"
	CloneInProgress      DataVolumePhase = "CloneInProgress"
	UploadScheduled      DataVolumePhase = "UploadScheduled"
	UploadReady          DataVolumePhase = "UploadReady"
	Succeeded            DataVolumePhase = "Succeeded"
	Failed               DataVolumePhase = "Failed"
	Paused               DataVolumePhase = "Paused"
	Unknown              DataVolumePhase = "Unknown"
)

// DataVolumeProgress is the share of the data moved, "NN.NN%" or "N/A".
type DataVolumeProgress string

// ProgressNotAvailable is the progress before any data moves.
const ProgressNotAvailable DataVolumeProgress = "N/A"

// DataVolumeConditionType names a condition.
type DataVolumeConditionType string

// The conditions of a DataVolume.
const (
	DataVolumeBound   DataVolumeConditionType = "Bound"
	DataVolumeRunning DataVolumeConditionType = "Running"
	DataVolumeReady   DataVolumeConditionType = "Ready"
)

// DataVolumeCondition is one observation about a DataVolume.
type DataVolumeCondition struct {
	Type               DataVolumeConditionType
	Status             corev1.ConditionStatus
	LastTransitionTime metav1.Time
	LastHeartbeatTime  metav1.Time
	Reason             string
	Message            string
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// DataVolumeList is a list of DataVolumes.
type DataVolumeList struct {
	metav1.TypeMeta
	metav1.ListMeta

	Items []DataVolume
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// CloneSource describes a PersistentVolumeClaim as a clone source: what it
// holds and whether the caller may clone it. It is served read-only at
// namespaces/<ns>/datavolumes/<pvc>/source, named after the claim.
type CloneSource struct {
	metav1.TypeMeta
	metav1.ObjectMeta

	Status CloneSourceStatus
}

// CloneSourceStatus is what a cloner needs to know about a source claim.
type CloneSourceStatus struct {
	// Capacity is the bound capacity of the claim, or its request while unbound.
	Capacity resource.Quantity
	// VolumeMode is Filesystem or Block.
	VolumeMode corev1.PersistentVolumeMode
	// StorageClassName is the class of the claim.
	StorageClassName string
	// Phase is the claim's phase.
	Phase corev1.PersistentVolumeClaimPhase
	// InUse is true while a running pod mounts the claim; a clone waits for it.
	InUse bool
	// UsedBy names the pods that mount the claim.
	UsedBy []string
	// Allowed says whether the caller may clone the claim into another namespace.
	Allowed bool
	// Reason is the authorizer's reason for Allowed.
	Reason string
}
