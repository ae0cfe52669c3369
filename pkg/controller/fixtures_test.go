package controller

import (
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"

	"github.com/datavolume/datavolume/pkg/apis/cdi"
	"github.com/datavolume/datavolume/pkg/apis/cdi/install"
	"github.com/datavolume/datavolume/pkg/apis/cdi/v1beta1"
	"github.com/datavolume/datavolume/pkg/plan"
)

func testScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(s)
	install.Install(s)
	return s
}

func importDV(name string) *v1beta1.DataVolume {
	return &v1beta1.DataVolume{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", UID: types.UID("uid-" + name), Labels: map[string]string{"team": "a"}},
		Spec: v1beta1.DataVolumeSpec{
			Source: &v1beta1.DataVolumeSource{HTTP: &v1beta1.DataVolumeSourceHTTP{URL: "http://images.example/disk.qcow2"}},
			PVC: &corev1.PersistentVolumeClaimSpec{
				AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
				Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
			},
		},
	}
}

func cloneDV(name, source string) *v1beta1.DataVolume {
	dv := importDV(name)
	dv.Spec.Source = &v1beta1.DataVolumeSource{PVC: &v1beta1.DataVolumeSourcePVC{Name: source}}
	return dv
}

// planOf reads a v1beta1 DataVolume as the controller does.
func planOf(dv *v1beta1.DataVolume) (*cdi.DataVolume, *plan.Plan) {
	internal := &cdi.DataVolume{}
	if err := testScheme().Convert(dv, internal, nil); err != nil {
		panic(err)
	}
	return internal, plan.For(dv.Namespace, &internal.Spec)
}

func boundClaim(dv *v1beta1.DataVolume, size string, mode corev1.PersistentVolumeMode) *corev1.PersistentVolumeClaim {
	return &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: dv.Name, Namespace: dv.Namespace, OwnerReferences: []metav1.OwnerReference{ownerReference(dv)}},
		Spec: corev1.PersistentVolumeClaimSpec{
			VolumeMode: &mode,
			Resources:  corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)}},
		},
		Status: corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimBound,
			Capacity: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)}},
	}
}

func jobWith(name string, conditions ...batchv1.JobConditionType) *batchv1.Job {
	job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns"}}
	for _, c := range conditions {
		job.Status.Conditions = append(job.Status.Conditions, batchv1.JobCondition{Type: c, Status: corev1.ConditionTrue})
	}
	return job
}

func runningPod(job string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: job + "-x", Namespace: "ns", Labels: map[string]string{labelJobName: job, LabelManagedBy: ManagedBy}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.0.0.9", ContainerStatuses: []corev1.ContainerStatus{{
			Name: clonerContainer, Ready: true, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}},
		}}},
	}
}

func failedPod(job string, exitCode int32, message string) *corev1.Pod {
	pod := runningPod(job)
	pod.Status.Phase = corev1.PodFailed
	pod.Status.ContainerStatuses[0].State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
		ExitCode: exitCode, Reason: "Error", Message: message,
	}}
	return pod
}

func mustQuantity(s string) resource.Quantity { return resource.MustParse(s) }
