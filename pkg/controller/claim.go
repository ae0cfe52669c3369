package controller

import (
	"fmt"
	"maps"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/datavolume/datavolume/pkg/apis/cdi"
	"github.com/datavolume/datavolume/pkg/apis/cdi/v1beta1"
	"github.com/datavolume/datavolume/pkg/claims"
	"github.com/datavolume/datavolume/pkg/plan"
)

// ownerReference makes dv the controlling owner of what it is set on, so
// deleting the DataVolume deletes its claim and Jobs.
func ownerReference(dv *v1beta1.DataVolume) metav1.OwnerReference {
	yes := true
	return metav1.OwnerReference{
		APIVersion:         v1beta1.SchemeGroupVersion.String(),
		Kind:               "DataVolume",
		Name:               dv.Name,
		UID:                dv.UID,
		Controller:         &yes,
		BlockOwnerDeletion: &yes,
	}
}

// ownedBy says obj is controlled by the DataVolume with uid.
func ownedBy(obj metav1.Object, dv *v1beta1.DataVolume) bool {
	ref := metav1.GetControllerOf(obj)
	return ref != nil && ref.UID == dv.UID
}

// claimSize is the storage the claim requests: spec.pvc's size as given;
// spec.storage's grown by the filesystem overhead for a Filesystem volume,
// as CDI's storage API does. A clone that leaves the size out gets the
// smallest claim that holds its source: the source's own size (a
// Filesystem target of a Block source grown by the overhead).
func claimSize(p *plan.Plan, source *corev1.PersistentVolumeClaim, overhead plan.FilesystemOverhead) (resource.Quantity, error) {
	t := p.Target
	switch {
	case t.Size != nil && t.Storage && t.VolumeMode == corev1.PersistentVolumeFilesystem && overhead > 0:
		return *resource.NewQuantity(plan.WithOverhead(t.Size.Value(), overhead), resource.BinarySI), nil
	case t.Size != nil:
		return *t.Size, nil
	case source != nil:
		size, _ := plan.RequiredTargetSize(claims.Size(source), claims.VolumeMode(source), t.VolumeMode, overhead)
		return size, nil
	default:
		return resource.Quantity{}, fmt.Errorf("%s: no size given and no source to take it from", t.SizePath())
	}
}

// renderClaim is the claim that receives a DataVolume's data, named like it
// and controlled by it. Unset spec.storage fields get CDI's defaults: one
// ReadWriteOnce access mode, Filesystem, the default class.
func renderClaim(dv *v1beta1.DataVolume, internal *cdi.DataVolume, p *plan.Plan, size resource.Quantity) *corev1.PersistentVolumeClaim {
	t := p.Target
	claim := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{
			Name:            dv.Name,
			Namespace:       dv.Namespace,
			Labels:          maps.Clone(dv.Labels),
			OwnerReferences: []metav1.OwnerReference{ownerReference(dv)},
			Annotations: map[string]string{
				AnnContentType:          string(p.ContentType),
				AnnCreatedForDataVolume: string(dv.UID),
			},
		},
	}
	if v, ok := dv.Annotations[AnnImmediateBinding]; ok {
		claim.Annotations[AnnImmediateBinding] = v
	}
	spec := &claim.Spec
	mode := t.VolumeMode
	spec.VolumeMode = &mode
	spec.AccessModes = t.AccessModes
	if len(spec.AccessModes) == 0 {
		spec.AccessModes = []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}
	}
	spec.StorageClassName = t.StorageClassName
	spec.Resources.Requests = corev1.ResourceList{corev1.ResourceStorage: size}
	if internal.Spec.PVC != nil {
		src := internal.Spec.PVC
		spec.Selector = src.Selector
		spec.VolumeName = src.VolumeName
		spec.Resources.Limits = src.Resources.Limits
		spec.VolumeAttributesClassName = src.VolumeAttributesClassName
	} else if internal.Spec.Storage != nil {
		spec.Selector = internal.Spec.Storage.Selector
		spec.VolumeName = internal.Spec.Storage.VolumeName
	}
	return claim
}
