package controller

import (
	"crypto/sha256"
	"encoding/hex"
)

// Annotations CDI users and KubeVirt read on the claim, with CDI's names.
const (
	annAPIGroup = "cdi.kubevirt.io"
	// AnnContentType is the content type of the claim's data.
	AnnContentType = annAPIGroup + "/storage.contentType"
	// AnnPodPhase is the phase of the pod that moved the data.
	AnnPodPhase = annAPIGroup + "/storage.pod.phase"
	// AnnPodRestarts counts the restarts of the pod that moves the data.
	AnnPodRestarts = annAPIGroup + "/storage.pod.restarts"
	// AnnCreatedForDataVolume is the UID of the DataVolume the claim was made for.
	AnnCreatedForDataVolume = annAPIGroup + "/createdForDataVolume"
	// AnnImmediateBinding asks for the claim to be populated at once even
	// where the class waits for a first consumer.
	AnnImmediateBinding = annAPIGroup + "/storage.bind.immediate.requested"
	// AnnRequiresScratch marks a claim whose import found it needs scratch
	// space: the next Job gets it.
	AnnRequiresScratch = annAPIGroup + "/storage.import.requiresScratch"
)

// Labels of what the controller creates.
const (
	// LabelManagedBy marks the Jobs and pods of the controller.
	LabelManagedBy = "app.kubernetes.io/managed-by"
	// ManagedBy is this controller's value of LabelManagedBy.
	ManagedBy = "datavolume-controller"
	// LabelDataVolumeUID names the DataVolume a Job or pod works for.
	LabelDataVolumeUID = "datavolume.cdi.kubevirt.io/uid"
	// labelJobName is set by the Job controller on its pods.
	labelJobName = "batch.kubernetes.io/job-name"
)

// The container of every data-moving pod.
const clonerContainer = "cloner"

// maxNameLength is the longest Job name: the Job controller copies it into a
// label of each pod, and label values hold 63 characters.
const maxNameLength = 63

// childName is prefix-name, shortened with a hash of name when it would be
// longer than a Job name may be.
func childName(prefix, name string) string {
	full := prefix + "-" + name
	if len(full) <= maxNameLength {
		return full
	}
	sum := sha256.Sum256([]byte(name))
	suffix := "-" + hex.EncodeToString(sum[:])[:10]
	return full[:maxNameLength-len(suffix)] + suffix
}
