package datavolume

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/datavolume/datavolume/pkg/apis/cdi"
)

// MissingCloneSize is the size to fill in when a clone's spec.storage leaves
// it out: the smallest size the rules accept, i.e. the source's, with the
// filesystem overhead when a Block source goes to a Filesystem target.
// ok is false when there is nothing to fill: not a clone, a size already
// given, or a source not found (the controller fills it once it exists).
func (r *Rules) MissingCloneSize(ctx context.Context, namespace string, spec *cdi.DataVolumeSpec) (size resource.Quantity, source string, ok bool, err error) {
	if spec.Storage == nil || spec.PVC != nil {
		return resource.Quantity{}, "", false, nil
	}
	if _, given := spec.Storage.Resources.Requests[corev1.ResourceStorage]; given {
		return resource.Quantity{}, "", false, nil
	}
	sourceNamespace, sourceName, cloning := cloneSource(namespace, spec)
	if !cloning {
		return resource.Quantity{}, "", false, nil
	}
	claim, err := r.sourceClaim(sourceNamespace, sourceName)
	if err != nil || claim == nil || claim.Size.IsZero() {
		return resource.Quantity{}, "", false, err
	}
	size, _ = requiredTargetSize(claim.Size, claim.Mode, volumeModeOrDefault(spec.Storage.VolumeMode), r.FilesystemOverhead)
	return size, claim.String(), true, nil
}
