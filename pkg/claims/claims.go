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

// PodsUsing names, sorted, the pods that have not finished and may write
// to the claim: a clone has to wait for them. A pod that mounts it only
// read-only (as the clone pods do) does not hold a clone back.
func PodsUsing(pods []*corev1.Pod, claimName string) []string {
	var names []string
	for _, pod := range pods {
		if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
			continue
		}
		if writes(pod, claimName) {
			names = append(names, pod.Name)
		}
	}
	slices.Sort(names)
	return names
}

// writes says the pod mounts the claim in a way that lets it write: the
// volume is not read-only and some container mounts it writable, or as a
// block device (which has no read-only mount).
func writes(pod *corev1.Pod, claimName string) bool {
	for _, volume := range pod.Spec.Volumes {
		source := volume.PersistentVolumeClaim
		if source == nil || source.ClaimName != claimName || source.ReadOnly {
			continue
		}
		used := false
		writable := false
		visit := func(mounts []corev1.VolumeMount, devices []corev1.VolumeDevice) {
			for _, m := range mounts {
				if m.Name == volume.Name {
					used = true
					writable = writable || !m.ReadOnly
				}
			}
			for _, d := range devices {
				if d.Name == volume.Name {
					used, writable = true, true
				}
			}
		}
		for _, c := range pod.Spec.InitContainers {
			visit(c.VolumeMounts, c.VolumeDevices)
		}
		for _, c := range pod.Spec.Containers {
			visit(c.VolumeMounts, c.VolumeDevices)
		}
		for _, c := range pod.Spec.EphemeralContainers {
			visit(c.VolumeMounts, c.VolumeDevices)
		}
		// A volume no container mounts is still attached to the pod's node:
		// count it, as the safe answer.
		if writable || !used {
			return true
		}
	}
	return false
}
