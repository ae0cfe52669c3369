package datavolume_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/registry/generic"
	"k8s.io/apiserver/pkg/registry/rest"
	etcd3testing "k8s.io/apiserver/pkg/storage/etcd3/testing"

	"github.com/datavolume/datavolume/pkg/apis/cdi"
	"github.com/datavolume/datavolume/pkg/apis/cdi/v1beta1"
	"github.com/datavolume/datavolume/pkg/apiserver"
	"github.com/datavolume/datavolume/pkg/cloneauth"
	dvregistry "github.com/datavolume/datavolume/pkg/registry/datavolume"
)

// newStorage returns the registry on a real, embedded etcd.
func newStorage(t *testing.T, onCreate dvregistry.CreateHook) dvregistry.Storage {
	t.Helper()
	server, config := etcd3testing.NewUnsecuredEtcd3TestClientServer(t)
	t.Cleanup(func() { server.Terminate(t) })
	config.Codec = apiserver.Codecs.LegacyCodec(v1beta1.SchemeGroupVersion)
	opts := generic.RESTOptions{
		StorageConfig:           config.ForResource(cdi.Resource("datavolumes")),
		Decorator:               generic.UndecoratedStorage,
		DeleteCollectionWorkers: 1,
		ResourcePrefix:          "datavolumes",
	}
	storage, err := dvregistry.NewStorage(apiserver.Scheme, opts, onCreate, nil)
	assert.NilError(t, err)
	t.Cleanup(storage.DataVolume.Destroy)
	return storage
}

func nsContext(ns string) context.Context {
	return genericapirequest.WithNamespace(genericapirequest.NewContext(), ns)
}

func validDataVolume(name string) *cdi.DataVolume {
	return &cdi.DataVolume{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns"},
		Spec: cdi.DataVolumeSpec{
			Source:      &cdi.DataVolumeSource{PVC: &cdi.DataVolumeSourcePVC{Namespace: "ns", Name: "disk"}},
			ContentType: cdi.DataVolumeKubeVirt,
			PVC: &corev1.PersistentVolumeClaimSpec{
				AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
				Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("2Gi")}},
			},
		},
	}
}

func TestCreateGetListDelete(t *testing.T) {
	s := newStorage(t, nil)
	ctx := nsContext("ns")

	in := validDataVolume("disk-1")
	in.Status.Phase = cdi.Succeeded // a client cannot set status at create
	in.Generation = 7               // nor the generation
	out, err := s.DataVolume.Create(ctx, in, rest.ValidateAllObjectFunc, &metav1.CreateOptions{})
	assert.NilError(t, err)
	created := out.(*cdi.DataVolume)
	assert.Check(t, created.UID != "")
	assert.Equal(t, created.Generation, int64(1))
	assert.DeepEqual(t, created.Status, cdi.DataVolumeStatus{Phase: cdi.Pending, Progress: cdi.ProgressNotAvailable})

	got, err := s.DataVolume.Get(ctx, "disk-1", &metav1.GetOptions{})
	assert.NilError(t, err)
	assert.DeepEqual(t, got.(*cdi.DataVolume).Spec, in.Spec, cmp.Comparer(func(a, b resource.Quantity) bool { return a.Cmp(b) == 0 }))

	_, err = s.DataVolume.Create(ctx, validDataVolume("disk-2"), rest.ValidateAllObjectFunc, &metav1.CreateOptions{})
	assert.NilError(t, err)
	list, err := s.DataVolume.List(ctx, &metainternalversion.ListOptions{})
	assert.NilError(t, err)
	var names []string
	for _, dv := range list.(*cdi.DataVolumeList).Items {
		names = append(names, dv.Name)
	}
	assert.DeepEqual(t, names, []string{"disk-1", "disk-2"})

	_, _, err = s.DataVolume.Delete(ctx, "disk-1", rest.ValidateAllObjectFunc, &metav1.DeleteOptions{})
	assert.NilError(t, err)
	_, err = s.DataVolume.Get(ctx, "disk-1", &metav1.GetOptions{})
	assert.Assert(t, apierrors.IsNotFound(err), "%v", err)
}

func TestCreateRefusesInvalidAndStoresNothing(t *testing.T) {
	s := newStorage(t, nil)
	ctx := nsContext("ns")
	bad := validDataVolume("bad")
	bad.Spec.Source.Blank = &cdi.DataVolumeBlankImage{}
	bad.Spec.PVC.Resources.Requests = nil
	_, err := s.DataVolume.Create(ctx, bad, rest.ValidateAllObjectFunc, &metav1.CreateOptions{})
	assert.Assert(t, apierrors.IsInvalid(err), "%v", err)
	var fields []string
	for _, c := range err.(apierrors.APIStatus).Status().Details.Causes {
		fields = append(fields, c.Field)
	}
	assert.DeepEqual(t, fields, []string{"spec.source", "spec.pvc.resources.requests.storage"})
	_, err = s.DataVolume.Get(ctx, "bad", &metav1.GetOptions{})
	assert.Assert(t, apierrors.IsNotFound(err))
}

func TestUpdateKeepsSpecImmutableAndStatusUntouched(t *testing.T) {
	s := newStorage(t, nil)
	ctx := nsContext("ns")
	_, err := s.DataVolume.Create(ctx, validDataVolume("disk"), rest.ValidateAllObjectFunc, &metav1.CreateOptions{})
	assert.NilError(t, err)

	// Labels may change; status written through the main resource is ignored.
	obj, err := s.DataVolume.Get(ctx, "disk", &metav1.GetOptions{})
	assert.NilError(t, err)
	dv := obj.(*cdi.DataVolume).DeepCopy()
	dv.Labels = map[string]string{"team": "storage"}
	dv.Status.Phase = cdi.Succeeded
	dv.Generation = 5
	out, _, err := s.DataVolume.Update(ctx, "disk", rest.DefaultUpdatedObjectInfo(dv), rest.ValidateAllObjectFunc, rest.ValidateAllObjectUpdateFunc, false, &metav1.UpdateOptions{})
	assert.NilError(t, err)
	assert.Equal(t, out.(*cdi.DataVolume).Labels["team"], "storage")
	assert.Equal(t, out.(*cdi.DataVolume).Status.Phase, cdi.Pending)
	assert.Equal(t, out.(*cdi.DataVolume).Generation, int64(1), "a client may not set the generation")

	// The spec may not change.
	dv = out.(*cdi.DataVolume).DeepCopy()
	dv.Spec.ContentType = cdi.DataVolumeArchive
	_, _, err = s.DataVolume.Update(ctx, "disk", rest.DefaultUpdatedObjectInfo(dv), rest.ValidateAllObjectFunc, rest.ValidateAllObjectUpdateFunc, false, &metav1.UpdateOptions{})
	assert.Assert(t, apierrors.IsInvalid(err), "%v", err)
	assert.ErrorContains(t, err, "spec.contentType: Forbidden: the spec of a DataVolume is immutable")

	// An update never creates.
	_, _, err = s.DataVolume.Update(ctx, "absent", rest.DefaultUpdatedObjectInfo(validDataVolume("absent")), rest.ValidateAllObjectFunc, rest.ValidateAllObjectUpdateFunc, false, &metav1.UpdateOptions{})
	assert.Assert(t, apierrors.IsNotFound(err), "%v", err)
}

func TestStatusUpdateChangesStatusOnly(t *testing.T) {
	s := newStorage(t, nil)
	ctx := nsContext("ns")
	_, err := s.DataVolume.Create(ctx, validDataVolume("disk"), rest.ValidateAllObjectFunc, &metav1.CreateOptions{})
	assert.NilError(t, err)

	obj, err := s.Status.Get(ctx, "disk", &metav1.GetOptions{})
	assert.NilError(t, err)
	dv := obj.(*cdi.DataVolume).DeepCopy()
	dv.Spec.ContentType = cdi.DataVolumeArchive
	dv.Annotations = map[string]string{cloneauth.GrantAnnotation: "forged"}
	dv.Status = cdi.DataVolumeStatus{Phase: cdi.CloneInProgress, Progress: "12.50%", ClaimName: "disk",
		Conditions: []cdi.DataVolumeCondition{{Type: cdi.DataVolumeBound, Status: corev1.ConditionTrue}}}
	out, _, err := s.Status.Update(ctx, "disk", rest.DefaultUpdatedObjectInfo(dv), rest.ValidateAllObjectFunc, rest.ValidateAllObjectUpdateFunc, false, &metav1.UpdateOptions{})
	assert.NilError(t, err)
	updated := out.(*cdi.DataVolume)
	assert.Equal(t, updated.Spec.ContentType, cdi.DataVolumeKubeVirt)
	assert.Equal(t, updated.Generation, int64(1), "a status update leaves the generation")
	assert.Check(t, is.Len(updated.Annotations, 0))
	assert.Equal(t, updated.Status.Phase, cdi.CloneInProgress)
	assert.Equal(t, string(updated.Status.Progress), "12.50%")

	// Nonsense status is refused.
	dv = updated.DeepCopy()
	dv.Status.Progress = "150%"
	_, _, err = s.Status.Update(ctx, "disk", rest.DefaultUpdatedObjectInfo(dv), rest.ValidateAllObjectFunc, rest.ValidateAllObjectUpdateFunc, false, &metav1.UpdateOptions{})
	assert.ErrorContains(t, err, "status.progress: Invalid value")
}

func TestWatchSeesCreateUpdateDelete(t *testing.T) {
	s := newStorage(t, nil)
	ctx := nsContext("ns")
	// Watch from the revision of a list: "0" would mean "from whenever the
	// watch goroutine first reads etcd", which may come after all three writes.
	list, err := s.DataVolume.List(ctx, &metainternalversion.ListOptions{})
	assert.NilError(t, err)
	rv := list.(*cdi.DataVolumeList).ResourceVersion
	assert.Assert(t, rv != "")
	w, err := s.DataVolume.Watch(ctx, &metainternalversion.ListOptions{ResourceVersion: rv})
	assert.NilError(t, err)
	defer w.Stop()

	_, err = s.DataVolume.Create(ctx, validDataVolume("disk"), rest.ValidateAllObjectFunc, &metav1.CreateOptions{})
	assert.NilError(t, err)
	_, _, err = s.DataVolume.Update(ctx, "disk", rest.DefaultUpdatedObjectInfo(nil, func(_ context.Context, _, old runtime.Object) (runtime.Object, error) {
		dv := old.(*cdi.DataVolume).DeepCopy()
		dv.Labels = map[string]string{"seen": "yes"}
		return dv, nil
	}), rest.ValidateAllObjectFunc, rest.ValidateAllObjectUpdateFunc, false, &metav1.UpdateOptions{})
	assert.NilError(t, err)
	_, _, err = s.DataVolume.Delete(ctx, "disk", rest.ValidateAllObjectFunc, &metav1.DeleteOptions{})
	assert.NilError(t, err)

	var got []watch.EventType
	timeout := time.After(10 * time.Second)
	for len(got) < 3 {
		select {
		case e := <-w.ResultChan():
			got = append(got, e.Type)
		case <-timeout:
			t.Fatalf("saw only %v", got)
		}
	}
	assert.DeepEqual(t, got, []watch.EventType{watch.Added, watch.Modified, watch.Deleted})
}

// The create hook sees the assigned UID, may annotate the object, and its
// error refuses the create with nothing stored.
func TestCreateHook(t *testing.T) {
	refused := errors.New("refused by hook")
	s := newStorage(t, func(_ context.Context, dv *cdi.DataVolume, _ *metav1.CreateOptions) error {
		if dv.UID == "" {
			return errors.New("no UID yet")
		}
		if dv.Name == "refused" {
			return apierrors.NewForbidden(cdi.Resource("datavolumes"), dv.Name, refused)
		}
		dv.Annotations = map[string]string{"hook": string(dv.UID)}
		return nil
	})
	ctx := nsContext("ns")
	out, err := s.DataVolume.Create(ctx, validDataVolume("stamped"), rest.ValidateAllObjectFunc, &metav1.CreateOptions{})
	assert.NilError(t, err)
	dv := out.(*cdi.DataVolume)
	assert.Equal(t, dv.Annotations["hook"], string(dv.UID))

	_, err = s.DataVolume.Create(ctx, validDataVolume("refused"), rest.ValidateAllObjectFunc, &metav1.CreateOptions{})
	assert.Assert(t, apierrors.IsForbidden(err), "%v", err)
	_, err = s.DataVolume.Get(ctx, "refused", &metav1.GetOptions{})
	assert.Assert(t, apierrors.IsNotFound(err))
}

func TestTableColumns(t *testing.T) {
	s := newStorage(t, nil)
	ctx := nsContext("ns")
	_, err := s.DataVolume.Create(ctx, validDataVolume("disk"), rest.ValidateAllObjectFunc, &metav1.CreateOptions{})
	assert.NilError(t, err)
	list, err := s.DataVolume.List(ctx, &metainternalversion.ListOptions{})
	assert.NilError(t, err)
	table, err := s.DataVolume.ConvertToTable(ctx, list, &metav1.TableOptions{})
	assert.NilError(t, err)
	var columns []string
	for _, c := range table.ColumnDefinitions {
		columns = append(columns, c.Name)
	}
	assert.DeepEqual(t, columns, []string{"Name", "Phase", "Progress", "Restarts", "Age"})
	assert.Equal(t, len(table.Rows), 1)
	assert.DeepEqual(t, table.Rows[0].Cells[:4], []interface{}{"disk", "Pending", "N/A", int64(0)})
}

func TestShortNamesAndCategories(t *testing.T) {
	s := newStorage(t, nil)
	assert.DeepEqual(t, s.DataVolume.ShortNames(), []string{"dv", "dvs"})
	assert.DeepEqual(t, s.DataVolume.Categories(), []string{"all"})
}
