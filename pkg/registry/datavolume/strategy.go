// Package datavolume is the registry of DataVolumes: how they are created,
// updated and stored, their status and source subresources, and how kubectl
// prints them.
package datavolume

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/apiserver/pkg/registry/generic"
	"k8s.io/apiserver/pkg/registry/rest"
	"k8s.io/apiserver/pkg/storage"
	"k8s.io/apiserver/pkg/storage/names"
	"sigs.k8s.io/structured-merge-diff/v6/fieldpath"

	"github.com/datavolume/datavolume/pkg/apis/cdi"
	"github.com/datavolume/datavolume/pkg/apis/cdi/validation"
	"github.com/datavolume/datavolume/pkg/cloneauth"
)

// strategy is how the main resource is created, updated and deleted.
type strategy struct {
	runtime.ObjectTyper
	names.NameGenerator
}

// NewStrategy returns the strategy of the datavolumes resource.
func NewStrategy(typer runtime.ObjectTyper) strategy {
	return strategy{typer, names.SimpleNameGenerator}
}

var (
	_ rest.RESTCreateStrategy  = strategy{}
	_ rest.RESTUpdateStrategy  = strategy{}
	_ rest.ResetFieldsStrategy = strategy{}
	_ rest.RESTCreateStrategy  = statusStrategy{}
	_ rest.RESTUpdateStrategy  = statusStrategy{}
	_ rest.ResetFieldsStrategy = statusStrategy{}
)

func (strategy) NamespaceScoped() bool { return true }

// GetResetFields keeps writes to the main resource from touching status.
func (strategy) GetResetFields() map[fieldpath.APIVersion]*fieldpath.Set {
	return resetFields(fieldpath.MakePathOrDie("status"))
}

// PrepareForCreate starts every DataVolume Pending with no progress: status
// belongs to the controller.
func (strategy) PrepareForCreate(_ context.Context, obj runtime.Object) {
	dv := obj.(*cdi.DataVolume)
	dv.Status = cdi.DataVolumeStatus{Phase: cdi.Pending, Progress: cdi.ProgressNotAvailable}
	// Any object with a spec, a CRD's too, starts at generation 1; controllers
	// compare it with what they observed. The spec is immutable and
	// rest.BeforeUpdate keeps the stored generation, so it stays 1.
	dv.Generation = 1
}

// PrepareForUpdate keeps the status and the clone grant: neither may be
// written through the main resource.
func (strategy) PrepareForUpdate(_ context.Context, obj, old runtime.Object) {
	dv, oldDV := obj.(*cdi.DataVolume), old.(*cdi.DataVolume)
	dv.Status = oldDV.Status
	keepAnnotation(dv, oldDV, cloneauth.GrantAnnotation)
}

func (strategy) Validate(_ context.Context, obj runtime.Object) field.ErrorList {
	return validation.ValidateDataVolume(obj.(*cdi.DataVolume))
}

func (strategy) WarningsOnCreate(context.Context, runtime.Object) []string { return nil }

func (strategy) AllowCreateOnUpdate(context.Context) bool { return false }

func (strategy) AllowUnconditionalUpdate(context.Context) bool { return true }

func (strategy) Canonicalize(runtime.Object) {}

func (strategy) ValidateUpdate(_ context.Context, obj, old runtime.Object) field.ErrorList {
	return validation.ValidateDataVolumeUpdate(obj.(*cdi.DataVolume), old.(*cdi.DataVolume))
}

func (strategy) WarningsOnUpdate(context.Context, runtime.Object, runtime.Object) []string {
	return nil
}

// statusStrategy is how the status subresource is updated: status only.
type statusStrategy struct {
	strategy
}

// NewStatusStrategy returns the strategy of datavolumes/status.
func NewStatusStrategy(s strategy) statusStrategy {
	return statusStrategy{s}
}

// GetResetFields keeps status writes from touching spec and metadata.
func (statusStrategy) GetResetFields() map[fieldpath.APIVersion]*fieldpath.Set {
	return resetFields(fieldpath.MakePathOrDie("spec"), fieldpath.MakePathOrDie("metadata"))
}

// PrepareForUpdate keeps everything but status as it was.
func (statusStrategy) PrepareForUpdate(_ context.Context, obj, old runtime.Object) {
	dv, oldDV := obj.(*cdi.DataVolume), old.(*cdi.DataVolume)
	dv.Spec = oldDV.Spec
	dv.Labels = oldDV.Labels
	dv.Annotations = oldDV.Annotations
	dv.Finalizers = oldDV.Finalizers
	dv.OwnerReferences = oldDV.OwnerReferences
}

func (statusStrategy) ValidateUpdate(_ context.Context, obj, old runtime.Object) field.ErrorList {
	return validation.ValidateDataVolumeStatusUpdate(obj.(*cdi.DataVolume), old.(*cdi.DataVolume))
}

func (statusStrategy) WarningsOnUpdate(context.Context, runtime.Object, runtime.Object) []string {
	return nil
}

// resetFields applies the same reset to every served version.
func resetFields(paths ...fieldpath.Path) map[fieldpath.APIVersion]*fieldpath.Set {
	set := fieldpath.NewSet(paths...)
	return map[fieldpath.APIVersion]*fieldpath.Set{
		"cdi.kubevirt.io/v1beta1":  set,
		"cdi.kubevirt.io/v1alpha1": set,
	}
}

func keepAnnotation(dv, old *cdi.DataVolume, key string) {
	value, had := old.Annotations[key]
	if !had {
		delete(dv.Annotations, key)
		return
	}
	if dv.Annotations == nil {
		dv.Annotations = map[string]string{}
	}
	dv.Annotations[key] = value
}

// GetAttrs returns the labels and fields a selector can match.
func GetAttrs(obj runtime.Object) (labels.Set, fields.Set, error) {
	dv, ok := obj.(*cdi.DataVolume)
	if !ok {
		return nil, nil, fmt.Errorf("not a DataVolume: %T", obj)
	}
	return dv.Labels, generic.ObjectMetaFieldsSet(&dv.ObjectMeta, true), nil
}

// MatchDataVolume is the filter used by list and watch.
func MatchDataVolume(label labels.Selector, field fields.Selector) storage.SelectionPredicate {
	return storage.SelectionPredicate{Label: label, Field: field, GetAttrs: GetAttrs}
}
