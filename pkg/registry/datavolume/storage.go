package datavolume

import (
	"context"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/registry/generic"
	genericregistry "k8s.io/apiserver/pkg/registry/generic/registry"
	"k8s.io/apiserver/pkg/registry/rest"
	"sigs.k8s.io/structured-merge-diff/v6/fieldpath"

	"github.com/datavolume/datavolume/pkg/apis/cdi"
)

// CreateHook runs on every create after the object's UID is assigned and
// before it is validated and stored; an error refuses the create. The clone
// authorization uses it to check permission and stamp a signed grant.
type CreateHook func(ctx context.Context, dv *cdi.DataVolume, options *metav1.CreateOptions) error

// Storage holds the REST storage of datavolumes and its subresources.
type Storage struct {
	DataVolume *REST
	Status     *StatusREST
	Source     *SourceREST
}

// NewStorage returns the storage of datavolumes, datavolumes/status and
// datavolumes/source.
func NewStorage(scheme *runtime.Scheme, optsGetter generic.RESTOptionsGetter, onCreate CreateHook, sources SourceDescriber) (Storage, error) {
	s := NewStrategy(scheme)
	store := &genericregistry.Store{
		NewFunc:                   func() runtime.Object { return &cdi.DataVolume{} },
		NewListFunc:               func() runtime.Object { return &cdi.DataVolumeList{} },
		PredicateFunc:             MatchDataVolume,
		DefaultQualifiedResource:  cdi.Resource("datavolumes"),
		SingularQualifiedResource: cdi.Resource("datavolume"),

		CreateStrategy:      s,
		UpdateStrategy:      s,
		DeleteStrategy:      s,
		ResetFieldsStrategy: s,

		TableConvertor: tableConvertor{},
	}
	if onCreate != nil {
		store.BeginCreate = func(ctx context.Context, obj runtime.Object, options *metav1.CreateOptions) (genericregistry.FinishFunc, error) {
			dv, ok := obj.(*cdi.DataVolume)
			if !ok {
				return nil, fmt.Errorf("not a DataVolume: %T", obj)
			}
			if err := onCreate(ctx, dv, options); err != nil {
				return nil, err
			}
			return func(context.Context, bool) {}, nil
		}
	}
	if err := store.CompleteWithOptions(&generic.StoreOptions{RESTOptions: optsGetter, AttrFunc: GetAttrs}); err != nil {
		return Storage{}, fmt.Errorf("completing datavolumes storage: %w", err)
	}

	// The status store shares the main store's storage with another strategy.
	statusStore := *store
	statusStrat := NewStatusStrategy(s)
	statusStore.CreateStrategy = nil
	statusStore.DeleteStrategy = nil
	statusStore.UpdateStrategy = statusStrat
	statusStore.ResetFieldsStrategy = statusStrat
	statusStore.BeginCreate = nil

	return Storage{
		DataVolume: &REST{store},
		Status:     &StatusREST{store: &statusStore},
		Source:     &SourceREST{sources: sources},
	}, nil
}

// REST is the storage of datavolumes.
type REST struct {
	*genericregistry.Store
}

var (
	_ rest.ShortNamesProvider = &REST{}
	_ rest.CategoriesProvider = &REST{}
)

// ShortNames lets kubectl accept "dv" and "dvs", as with CDI.
func (*REST) ShortNames() []string { return []string{"dv", "dvs"} }

// Categories puts DataVolumes in "kubectl get all".
func (*REST) Categories() []string { return []string{"all"} }

// StatusREST is the storage of datavolumes/status.
type StatusREST struct {
	store *genericregistry.Store
}

var (
	_ rest.Patcher             = &StatusREST{}
	_ rest.ResetFieldsStrategy = &StatusREST{}
	_ rest.TableConvertor      = &StatusREST{}
)

// New returns an empty DataVolume.
func (r *StatusREST) New() runtime.Object { return &cdi.DataVolume{} }

// Destroy does nothing: the main store owns the storage.
func (r *StatusREST) Destroy() {}

// Get returns the DataVolume whose status is read.
func (r *StatusREST) Get(ctx context.Context, name string, options *metav1.GetOptions) (runtime.Object, error) {
	return r.store.Get(ctx, name, options)
}

// Update writes the status; it never creates a DataVolume.
func (r *StatusREST) Update(ctx context.Context, name string, objInfo rest.UpdatedObjectInfo, createValidation rest.ValidateObjectFunc,
	updateValidation rest.ValidateObjectUpdateFunc, _ bool, options *metav1.UpdateOptions) (runtime.Object, bool, error) {
	return r.store.Update(ctx, name, objInfo, createValidation, updateValidation, false, options)
}

// GetResetFields keeps status writes from touching anything but status.
func (r *StatusREST) GetResetFields() map[fieldpath.APIVersion]*fieldpath.Set {
	return r.store.GetResetFields()
}

// ConvertToTable prints the DataVolume as the main resource does.
func (r *StatusREST) ConvertToTable(ctx context.Context, object runtime.Object, tableOptions runtime.Object) (*metav1.Table, error) {
	return r.store.ConvertToTable(ctx, object, tableOptions)
}
