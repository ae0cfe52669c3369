package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// +genclient
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// DataVolume is a request to populate a PersistentVolumeClaim with a VM disk:
// imported over HTTP or from a registry, uploaded, cloned from another PVC or
// left blank.
type DataVolume struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec DataVolumeSpec `json:"spec"`
	// +optional
	Status DataVolumeStatus `json:"status,omitempty"`
}

// DataVolumeSpec says where the data comes from and what volume receives it.
type DataVolumeSpec struct {
	// Source is where the data comes from; exactly one member is set.
	// +optional
	Source *DataVolumeSource `json:"source,omitempty"`
	// PVC is the claim to create, as given. Exactly one of pvc and storage is set.
	// +optional
	PVC *corev1.PersistentVolumeClaimSpec `json:"pvc,omitempty"`
	// Storage is the claim to create, with unset fields filled from defaults
	// (for a clone, the size comes from the source claim).
	// +optional
	Storage *StorageSpec `json:"storage,omitempty"`
	// PriorityClassName is given to the pods that move the data.
	// +optional
	PriorityClassName string `json:"priorityClassName,omitempty"`
	// ContentType is kubevirt (a disk image, the default) or archive (a tar
	// extracted into a filesystem volume).
	// +optional
	ContentType DataVolumeContentType `json:"contentType,omitempty"`
	// Preallocation asks for the whole volume to be allocated up front.
	// +optional
	Preallocation *bool `json:"preallocation,omitempty"`
}

// StorageSpec is a PersistentVolumeClaimSpec whose unset fields are filled
// from defaults.
type StorageSpec struct {
	// AccessModes of the claim.
	// +optional
	// +listType=atomic
	AccessModes []corev1.PersistentVolumeAccessMode `json:"accessModes,omitempty"`
	// Selector over volumes to bind to.
	// +optional
	Selector *metav1.LabelSelector `json:"selector,omitempty"`
	// Resources: the requested storage size. Left out for a clone, it is the
	// source's size.
	// +optional
	Resources corev1.VolumeResourceRequirements `json:"resources,omitempty"`
	// VolumeName binds to a given PersistentVolume.
	// +optional
	VolumeName string `json:"volumeName,omitempty"`
	// StorageClassName of the claim.
	// +optional
	StorageClassName *string `json:"storageClassName,omitempty"`
	// VolumeMode is Filesystem or Block.
	// +optional
	VolumeMode *corev1.PersistentVolumeMode `json:"volumeMode,omitempty"`
	// DataSource of the claim.
	// +optional
	DataSource *corev1.TypedLocalObjectReference `json:"dataSource,omitempty"`
	// DataSourceRef of the claim.
	// +optional
	DataSourceRef *corev1.TypedObjectReference `json:"dataSourceRef,omitempty"`
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
	// HTTP imports an image over HTTP or HTTPS.
	// +optional
	HTTP *DataVolumeSourceHTTP `json:"http,omitempty"`
	// Registry imports the /disk directory of a container image.
	// +optional
	Registry *DataVolumeSourceRegistry `json:"registry,omitempty"`
	// PVC clones an existing PersistentVolumeClaim.
	// +optional
	PVC *DataVolumeSourcePVC `json:"pvc,omitempty"`
	// Upload waits for an image to be uploaded.
	// +optional
	Upload *DataVolumeSourceUpload `json:"upload,omitempty"`
	// Blank creates an empty disk image.
	// +optional
	Blank *DataVolumeBlankImage `json:"blank,omitempty"`
}

// DataVolumeSourceHTTP imports an image over HTTP or HTTPS.
type DataVolumeSourceHTTP struct {
	// URL of the image.
	URL string `json:"url"`
	// SecretRef names a Secret with keys accessKeyId and secretKey (basic auth).
	// +optional
	SecretRef string `json:"secretRef,omitempty"`
	// CertConfigMap names a ConfigMap holding the CA bundle of the server.
	// +optional
	CertConfigMap string `json:"certConfigMap,omitempty"`
	// ExtraHeaders are sent with every request.
	// +optional
	// +listType=atomic
	ExtraHeaders []string `json:"extraHeaders,omitempty"`
	// SecretExtraHeaders name Secrets whose values are sent as headers.
	// +optional
	// +listType=atomic
	SecretExtraHeaders []string `json:"secretExtraHeaders,omitempty"`
	// Checksum is algorithm:hex over the downloaded bytes (md5, sha1, sha256, sha512).
	// +optional
	Checksum string `json:"checksum,omitempty"`
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
	URL string `json:"url"`
	// PullMethod is pod (the default) or node.
	// +optional
	PullMethod RegistryPullMethod `json:"pullMethod,omitempty"`
	// SecretRef names a Secret with the registry credentials.
	// +optional
	SecretRef string `json:"secretRef,omitempty"`
	// CertConfigMap names a ConfigMap holding the CA bundle of the registry.
	// +optional
	CertConfigMap string `json:"certConfigMap,omitempty"`
}

// DataVolumeSourcePVC clones an existing PersistentVolumeClaim.
type DataVolumeSourcePVC struct {
	// Namespace of the source claim; cloning across namespaces needs
	// permission on datavolumes/source there.
	Namespace string `json:"namespace"`
	// Name of the source claim.
	Name string `json:"name"`
}

// DataVolumeSourceUpload waits for an image to be uploaded.
type DataVolumeSourceUpload struct{}

// DataVolumeBlankImage creates an empty disk image.
type DataVolumeBlankImage struct{}

// DataVolumeStatus is what the controller has done so far.
type DataVolumeStatus struct {
	// ClaimName is the PersistentVolumeClaim that holds the data.
	// +optional
	ClaimName string `json:"claimName,omitempty"`
	// Phase is where the DataVolume is in its life.
	// +optional
	Phase DataVolumePhase `json:"phase,omitempty"`
	// Progress is "NN.NN%" or "N/A".
	// +optional
	Progress DataVolumeProgress `json:"progress,omitempty"`
	// RestartCount counts restarts of the pod moving the data.
	// +optional
	RestartCount int32 `json:"restartCount,omitempty"`
	// Conditions are Bound, Running and Ready.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []DataVolumeCondition `json:"conditions,omitempty"`
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
	// Type is Bound, Running or Ready.
	Type DataVolumeConditionType `json:"type"`
	// Status is True, False or Unknown.
	Status corev1.ConditionStatus `json:"status"`
	// LastTransitionTime is when Status last changed.
	// +optional
	LastTransitionTime metav1.Time `json:"lastTransitionTime,omitempty"`
	// LastHeartbeatTime is when the condition was last observed.
	// +optional
	LastHeartbeatTime metav1.Time `json:"lastHeartbeatTime,omitempty"`
	// Reason is a machine-readable cause.
	// +optional
	Reason string `json:"reason,omitempty"`
	// Message explains the condition to a person.
	// +optional
	Message string `json:"message,omitempty"`
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// DataVolumeList is a list of DataVolumes.
type DataVolumeList struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`

	Items []DataVolume `json:"items"`
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// CloneSource describes a PersistentVolumeClaim as a clone source: what it
// holds and whether the caller may clone it. It is served read-only at
// namespaces/<ns>/datavolumes/<pvc>/source, named after the claim.
type CloneSource struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +optional
	Status CloneSourceStatus `json:"status,omitempty"`
}

// CloneSourceStatus is what a cloner needs to know about a source claim.
type CloneSourceStatus struct {
	// Capacity is the bound capacity of the claim, or its request while unbound.
	// +optional
	Capacity resource.Quantity `json:"capacity,omitempty"`
	// VolumeMode is Filesystem or Block.
	// +optional
	VolumeMode corev1.PersistentVolumeMode `json:"volumeMode,omitempty"`
	// StorageClassName is the class of the claim.
	// +optional
	StorageClassName string `json:"storageClassName,omitempty"`
	// Phase is the claim's phase.
	// +optional
	Phase corev1.PersistentVolumeClaimPhase `json:"phase,omitempty"`
	// InUse is true while a running pod mounts the claim; a clone waits for it.
	InUse bool `json:"inUse"`
	// UsedBy names the pods that mount the claim.
	// +optional
	// +listType=atomic
	UsedBy []string `json:"usedBy,omitempty"`
	// Allowed says whether the caller may clone the claim into another namespace.
	Allowed bool `json:"allowed"`
	// Reason is the authorizer's reason for Allowed.
	// +optional
	Reason string `json:"reason,omitempty"`
}
