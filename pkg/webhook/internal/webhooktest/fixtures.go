// Package webhooktest builds the cluster objects and listers the webhook's
// tests run against: listers over indexers, no API server.
package webhooktest

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	corev1listers "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"sigs.k8s.io/yaml"
)

// Listers returns claim and pod listers holding objects.
func Listers(t testing.TB, objects ...runtime.Object) (corev1listers.PersistentVolumeClaimLister, corev1listers.PodLister) {
	t.Helper()
	indexers := cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc}
	claims := cache.NewIndexer(cache.MetaNamespaceKeyFunc, indexers)
	pods := cache.NewIndexer(cache.MetaNamespaceKeyFunc, indexers)
	for _, obj := range objects {
		var err error
		switch obj.(type) {
		case *corev1.PersistentVolumeClaim:
			err = claims.Add(obj)
		case *corev1.Pod:
			err = pods.Add(obj)
		default:
			t.Fatalf("unexpected fixture %T", obj)
		}
		if err != nil {
			t.Fatalf("adding fixture: %v", err)
		}
	}
	return corev1listers.NewPersistentVolumeClaimLister(claims), corev1listers.NewPodLister(pods)
}

// ClaimOption adjusts a fixture claim.
type ClaimOption func(*corev1.PersistentVolumeClaim)

// BoundClaim is a Filesystem claim bound with the given capacity.
func BoundClaim(namespace, name, capacity string, opts ...ClaimOption) *corev1.PersistentVolumeClaim {
	claim := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(capacity)}},
		},
		Status: corev1.PersistentVolumeClaimStatus{
			Phase:    corev1.ClaimBound,
			Capacity: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(capacity)},
		},
	}
	for _, opt := range opts {
		opt(claim)
	}
	return claim
}

// BlockMode makes the claim a Block volume.
func BlockMode(claim *corev1.PersistentVolumeClaim) {
	mode := corev1.PersistentVolumeBlock
	claim.Spec.VolumeMode = &mode
}

// Unbound leaves the claim Pending with only its request.
func Unbound(claim *corev1.PersistentVolumeClaim) {
	claim.Status = corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimPending}
}

// Requesting sets the claim's request, leaving its bound capacity.
func Requesting(size string) ClaimOption {
	return func(claim *corev1.PersistentVolumeClaim) {
		claim.Spec.Resources.Requests[corev1.ResourceStorage] = resource.MustParse(size)
	}
}

// PodUsing is a pod in the given phase mounting the claim.
func PodUsing(namespace, name, claimName string, phase corev1.PodPhase) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec: corev1.PodSpec{Volumes: []corev1.Volume{{
			Name:         "disk",
			VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claimName}},
		}}},
		Status: corev1.PodStatus{Phase: phase},
	}
}

// JSON converts a YAML manifest to JSON, failing the test if it is not YAML.
func JSON(t testing.TB, manifest string) []byte {
	t.Helper()
	raw, err := yaml.YAMLToJSON([]byte(manifest))
	if err != nil {
		t.Fatalf("manifest is not YAML: %v", err)
	}
	return raw
}
