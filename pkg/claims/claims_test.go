package claims

import (
	"testing"

	"gotest.tools/v3/assert"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func claim(request, capacity string, phase corev1.PersistentVolumeClaimPhase) *corev1.PersistentVolumeClaim {
	c := &corev1.PersistentVolumeClaim{Status: corev1.PersistentVolumeClaimStatus{Phase: phase}}
	c.Spec.Resources.Requests = corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(request)}
	if capacity != "" {
		c.Status.Capacity = corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(capacity)}
	}
	return c
}

func TestSize(t *testing.T) {
	tests := map[string]struct {
		claim *corev1.PersistentVolumeClaim
		want  string
	}{
		"bound: capacity":             {claim("1Gi", "2Gi", corev1.ClaimBound), "2Gi"},
		"pending: request":            {claim("1Gi", "", corev1.ClaimPending), "1Gi"},
		"bound without capacity":      {claim("1Gi", "", corev1.ClaimBound), "1Gi"},
		"lost: request, not capacity": {claim("1Gi", "5Gi", corev1.ClaimLost), "1Gi"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := Size(tc.claim)
			assert.Equal(t, got.Cmp(resource.MustParse(tc.want)), 0, "got %s", got.String())
		})
	}
}

func TestVolumeMode(t *testing.T) {
	c := claim("1Gi", "", corev1.ClaimPending)
	assert.Equal(t, VolumeMode(c), corev1.PersistentVolumeFilesystem)
	block := corev1.PersistentVolumeBlock
	c.Spec.VolumeMode = &block
	assert.Equal(t, VolumeMode(c), corev1.PersistentVolumeBlock)
}

func TestPodsUsing(t *testing.T) {
	pod := func(name, claimName string, phase corev1.PodPhase) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: corev1.PodSpec{Volumes: []corev1.Volume{{Name: "v", VolumeSource: corev1.VolumeSource{
				PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claimName}}}}},
			Status: corev1.PodStatus{Phase: phase},
		}
	}
	pods := []*corev1.Pod{
		pod("vm-b", "disk", corev1.PodRunning),
		pod("vm-a", "disk", corev1.PodPending),
		pod("done", "disk", corev1.PodSucceeded),
		pod("crashed", "disk", corev1.PodFailed),
		pod("other", "other-disk", corev1.PodRunning),
	}
	assert.DeepEqual(t, PodsUsing(pods, "disk"), []string{"vm-a", "vm-b"})
	assert.Assert(t, PodsUsing(pods, "unused") == nil)
}

func TestPodsUsingCountsOnlyWriters(t *testing.T) {
	pod := func(name string, readOnlyVolume bool, containers ...corev1.Container) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: corev1.PodSpec{
				Volumes: []corev1.Volume{{Name: "v", VolumeSource: corev1.VolumeSource{
					PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "disk", ReadOnly: readOnlyVolume}}}},
				Containers: containers,
			},
			Status: corev1.PodStatus{Phase: corev1.PodRunning},
		}
	}
	mount := func(readOnly bool) corev1.Container {
		return corev1.Container{Name: "c", VolumeMounts: []corev1.VolumeMount{{Name: "v", MountPath: "/d", ReadOnly: readOnly}}}
	}
	device := corev1.Container{Name: "d", VolumeDevices: []corev1.VolumeDevice{{Name: "v", DevicePath: "/dev/x"}}}
	pods := []*corev1.Pod{
		pod("read-only-volume", true, mount(false)),
		pod("read-only-mounts", false, mount(true), mount(true)),
		pod("one-writable-mount", false, mount(true), mount(false)),
		pod("block-device", false, device),
		pod("attached-unmounted", false),
	}
	assert.DeepEqual(t, PodsUsing(pods, "disk"), []string{"attached-unmounted", "block-device", "one-writable-mount"})
}
