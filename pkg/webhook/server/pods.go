package server

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// trimPod keeps what the rules read of a pod (its name, its claim volumes
// and its phase): the webhook caches every pod of the cluster.
func trimPod(obj any) (any, error) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		// Tombstones and anything unexpected pass through untouched.
		return obj, nil
	}
	trimmed := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:            pod.Name,
			Namespace:       pod.Namespace,
			UID:             pod.UID,
			ResourceVersion: pod.ResourceVersion,
		},
		Status: corev1.PodStatus{Phase: pod.Status.Phase},
	}
	for _, volume := range pod.Spec.Volumes {
		if volume.PersistentVolumeClaim != nil {
			trimmed.Spec.Volumes = append(trimmed.Spec.Volumes, corev1.Volume{
				Name:         volume.Name,
				VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: volume.PersistentVolumeClaim},
			})
		}
	}
	return trimmed, nil
}
