package datavolume

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/labels"
	corev1listers "k8s.io/client-go/listers/core/v1"

	"github.com/datavolume/datavolume/pkg/claims"
)

// Lookups reads the objects the rules depend on, from informer caches.
type Lookups struct {
	Claims corev1listers.PersistentVolumeClaimLister
	Pods   corev1listers.PodLister
}

// sourceClaim is what the rules need to know about a clone's source.
type sourceClaim struct {
	Namespace, Name string
	// Size is the bound capacity, or the request while unbound; zero when
	// the claim states neither.
	Size resource.Quantity
	Mode corev1.PersistentVolumeMode
}

func (s *sourceClaim) String() string { return s.Namespace + "/" + s.Name }

// sourceClaim reads the claim namespace/name; nil when it does not exist.
func (l Lookups) sourceClaim(namespace, name string) (*sourceClaim, error) {
	claim, err := l.Claims.PersistentVolumeClaims(namespace).Get(name)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading source PersistentVolumeClaim %s/%s: %w", namespace, name, err)
	}
	return &sourceClaim{
		Namespace: namespace,
		Name:      name,
		Size:      claims.Size(claim),
		Mode:      claims.VolumeMode(claim),
	}, nil
}

// podsUsing names the pods of namespace that mount the claim and have not
// finished: the clone has to wait for them.
func (l Lookups) podsUsing(namespace, claimName string) ([]string, error) {
	pods, err := l.Pods.Pods(namespace).List(labels.Everything())
	if err != nil {
		return nil, fmt.Errorf("listing pods in %s: %w", namespace, err)
	}
	return claims.PodsUsing(pods, claimName), nil
}
