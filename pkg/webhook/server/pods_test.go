package server

import (
	"testing"

	"gotest.tools/v3/assert"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
)

func TestTrimPodKeepsWhatTheRulesRead(t *testing.T) {
	claim := &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "disk"}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "virt-launcher", Namespace: "ns", UID: "u", ResourceVersion: "7",
			Labels: map[string]string{"a": "b"}, Annotations: map[string]string{"big": "value"}},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: "compute", Image: "virt-launcher"}},
			Volumes: []corev1.Volume{
				{Name: "root", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: claim}},
				{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{}}},
			},
		},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.0.0.1"},
	}
	trimmed, err := trimPod(pod)
	assert.NilError(t, err)
	assert.DeepEqual(t, trimmed, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "virt-launcher", Namespace: "ns", UID: "u", ResourceVersion: "7"},
		Spec:       corev1.PodSpec{Volumes: []corev1.Volume{{Name: "root", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: claim}}}},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning},
	})

	tombstone := cache.DeletedFinalStateUnknown{Key: "ns/gone"}
	passed, err := trimPod(tombstone)
	assert.NilError(t, err)
	assert.Equal(t, passed, any(tombstone))
}
