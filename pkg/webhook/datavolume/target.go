package datavolume

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/datavolume/datavolume/pkg/apis/cdi"
)

// targetClaim is the claim a spec asks for, from spec.pvc or spec.storage.
type targetClaim struct {
	// Path is spec.pvc or spec.storage.
	Path *field.Path
	// Size is the requested storage; nil when left out (storage only).
	Size *resource.Quantity
	// Mode is the requested volume mode, Filesystem when left out.
	Mode corev1.PersistentVolumeMode
}

// targetClaimOf returns the claim the spec asks for, or false when the spec
// sets neither or both of pvc and storage (the static rules report that).
func targetClaimOf(spec *cdi.DataVolumeSpec, fldPath *field.Path) (*targetClaim, bool) {
	switch {
	case spec.PVC != nil && spec.Storage == nil:
		return newTargetClaim(fldPath.Child("pvc"), spec.PVC.Resources.Requests, spec.PVC.VolumeMode), true
	case spec.Storage != nil && spec.PVC == nil:
		return newTargetClaim(fldPath.Child("storage"), spec.Storage.Resources.Requests, spec.Storage.VolumeMode), true
	default:
		return nil, false
	}
}

func newTargetClaim(path *field.Path, requests corev1.ResourceList, mode *corev1.PersistentVolumeMode) *targetClaim {
	target := &targetClaim{Path: path, Mode: volumeModeOrDefault(mode)}
	if size, ok := requests[corev1.ResourceStorage]; ok {
		target.Size = &size
	}
	return target
}

func (t *targetClaim) sizePath() *field.Path {
	return t.Path.Child("resources", "requests", string(corev1.ResourceStorage))
}

// cloneSource returns the namespace and name of the claim a spec clones, or
// false when it clones nothing. An empty namespace means the DataVolume's.
func cloneSource(namespace string, spec *cdi.DataVolumeSpec) (sourceNamespace, sourceName string, ok bool) {
	if spec.Source == nil || spec.Source.PVC == nil || spec.Source.PVC.Name == "" {
		return "", "", false
	}
	sourceNamespace = spec.Source.PVC.Namespace
	if sourceNamespace == "" {
		sourceNamespace = namespace
	}
	return sourceNamespace, spec.Source.PVC.Name, true
}

// contentTypeOf is the spec's content type, kubevirt when left out.
func contentTypeOf(spec *cdi.DataVolumeSpec) cdi.DataVolumeContentType {
	if spec.ContentType == "" {
		return cdi.DataVolumeKubeVirt
	}
	return spec.ContentType
}
