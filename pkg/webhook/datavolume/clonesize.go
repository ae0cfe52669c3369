package datavolume

import (
	"context"

	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/datavolume/datavolume/pkg/apis/cdi"
	"github.com/datavolume/datavolume/pkg/plan"
)

// MissingCloneSize is the size to fill in when a clone's spec.storage leaves
// it out: the smallest size the rules accept, i.e. the source's, with the
// filesystem overhead when a Block source goes to a Filesystem target.
// ok is false when there is nothing to fill: not a clone, a size already
// given, or a source not found (the controller fills it once it exists).
func (r *Rules) MissingCloneSize(ctx context.Context, namespace string, spec *cdi.DataVolumeSpec) (size resource.Quantity, source string, ok bool, err error) {
	p := plan.For(namespace, spec)
	if !p.IsClone() || p.Target == nil || !p.Target.Storage || p.Target.Size != nil {
		return resource.Quantity{}, "", false, nil
	}
	claim, err := r.sourceClaim(p.CloneSource.Namespace, p.CloneSource.Name)
	if err != nil || claim == nil || claim.Size.IsZero() {
		return resource.Quantity{}, "", false, err
	}
	size, _ = plan.RequiredTargetSize(claim.Size, claim.Mode, p.Target.VolumeMode, r.FilesystemOverhead)
	return size, claim.String(), true, nil
}
