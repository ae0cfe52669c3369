// Package claims answers what a PersistentVolumeClaim is as a clone source:
// its size, its volume mode and the pods that still use it. The aggregated
// apiserver (datavolumes/source) and the admission webhook ask the same
// questions and must get the same answers.
package claims

import (
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// Size is the claim's bound capacity, or its request while it is unbound.
func Size(claim *corev1.PersistentVolumeClaim) resource.Quantity {
	if claim.Status.Phase == corev1.ClaimBound {
		if capacity, ok := claim.Status.Capacity[corev1.ResourceStorage]; ok {
			return capacity
		}
	}
	return claim.Spec.Resources.Requests[corev1.ResourceStorage]
}

// VolumeMode is the claim's mode, Filesystem when it names none (as
// Kubernetes defaults it).
func VolumeMode(claim *corev1.PersistentVolumeClaim) corev1.PersistentVolumeMode {
	if claim.Spec.VolumeMode == nil {
		return corev1.PersistentVolumeFilesystem
	}
	return *claim.Spec.VolumeMode
}

// PodsUsing names, sorted, the pods that mount the claim and have not
// finished: a clone has to wait for them.
func PodsUsing(pods []*corev1.Pod, claimName string) []string {
	var names []string
	for _, pod := range pods {
		if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
			continue
		}
		if mounts(pod, claimName) {
			names = append(names, pod.Name)
		}
	}
	slices.Sort(names)
	return names
}

func mounts(pod *corev1.Pod, claimName string) bool {
	for _, volume := range pod.Spec.Volumes {
		if volume.PersistentVolumeClaim != nil && volume.PersistentVolumeClaim.ClaimName == claimName {
			return true
		}
	}
	return false
}
