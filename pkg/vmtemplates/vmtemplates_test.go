package vmtemplates

import (
	"testing"

	"gotest.tools/v3/assert"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/datavolume/datavolume/pkg/kubevirt"
)

func TestRenderIsWhatVirtControllerMakes(t *testing.T) {
	vm := &unstructured.Unstructured{}
	vm.SetAPIVersion("kubevirt.io/v1")
	vm.SetKind("VirtualMachine")
	vm.SetNamespace("dst")
	vm.SetName("vm-dv-clone")
	vm.SetUID("uid-vm")
	decoded, err := kubevirt.Decode([]byte(`{"spec":{"dataVolumeTemplates":[{"metadata":{"name":"favorite-clone","labels":{"app":"x"},"annotations":{"a":"b"}},
"spec":{"pvc":{"accessModes":["ReadWriteOnce"],"resources":{"requests":{"storage":"2Gi"}}},"source":{"pvc":{"namespace":"src","name":"disk"}}}}]}}`))
	assert.NilError(t, err)

	dv, err := render(vm, &decoded.Spec.DataVolumeTemplates[0])
	assert.NilError(t, err)
	assert.Equal(t, dv.Name, "favorite-clone")
	assert.Equal(t, dv.Namespace, "dst")
	assert.DeepEqual(t, dv.Labels, map[string]string{"app": "x", kubevirt.CreatedByLabel: "uid-vm"})
	assert.DeepEqual(t, dv.Annotations, map[string]string{"a": "b"})
	assert.Equal(t, len(dv.OwnerReferences), 1)
	ref := dv.OwnerReferences[0]
	assert.Equal(t, ref.Kind, "VirtualMachine")
	assert.Equal(t, ref.APIVersion, "kubevirt.io/v1")
	assert.Equal(t, string(ref.UID), "uid-vm")
	assert.Assert(t, *ref.Controller && *ref.BlockOwnerDeletion)
	assert.Equal(t, dv.Spec.Source.PVC.Namespace, "src")
	assert.Equal(t, dv.Spec.PVC.Resources.Requests.Storage().String(), "2Gi")
	// The template's own labels are not changed.
	assert.Equal(t, len(decoded.Spec.DataVolumeTemplates[0].Metadata.Labels), 1)
}

func TestRenderRefusesATemplateWithoutSpec(t *testing.T) {
	vm := &unstructured.Unstructured{}
	_, err := render(vm, &kubevirt.DataVolumeTemplate{Metadata: kubevirt.ObjectMeta{Name: "x"}})
	assert.ErrorContains(t, err, "dataVolumeTemplate x has no spec")
}
