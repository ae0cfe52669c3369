package apiserver

import (
	"context"
	"testing"

	"gotest.tools/v3/assert"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apiserver/pkg/authentication/user"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/utils/ptr"

	"github.com/datavolume/datavolume/pkg/apis/cdi"
	"github.com/datavolume/datavolume/pkg/kubevirt"
	"github.com/datavolume/datavolume/pkg/plan"
)

const controllerUser = "system:serviceaccount:datavolume-system:datavolume-controller"

func testVM() *unstructured.Unstructured {
	vm := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
		"metadata": map[string]any{"name": "vm", "namespace": "dst", "uid": "uid-vm"},
		"spec": map[string]any{
			"dataVolumeTemplates": []any{map[string]any{
				"metadata": map[string]any{"name": "disk"},
				"spec":     map[string]any{"source": map[string]any{"pvc": map[string]any{"namespace": "src", "name": "golden"}}},
			}},
			"template": map[string]any{"spec": map[string]any{"volumes": []any{
				map[string]any{"name": "sa", "serviceAccount": map[string]any{"serviceAccountName": "vm-runner"}},
			}}},
		},
	}}
	return vm
}

func templateDV(owner string, uid string, source string) (*cdi.DataVolume, *plan.Plan) {
	dv := &cdi.DataVolume{ObjectMeta: metav1.ObjectMeta{Name: "disk", Namespace: "dst"},
		Spec: cdi.DataVolumeSpec{Source: &cdi.DataVolumeSource{PVC: &cdi.DataVolumeSourcePVC{Namespace: "src", Name: source}}}}
	if owner != "" {
		dv.OwnerReferences = []metav1.OwnerReference{{APIVersion: "kubevirt.io/v1", Kind: "VirtualMachine", Name: owner, UID: types.UID(uid), Controller: ptr.To(true)}}
	}
	return dv, plan.For(dv.Namespace, &dv.Spec)
}

func newJudge(*testing.T) *vmTemplateJudge {
	scheme := runtime.NewScheme()
	client := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(scheme,
		map[schema.GroupVersionResource]string{kubevirt.VirtualMachines: "VirtualMachineList"}, testVM())
	return newVMTemplateJudge(controllerUser, client)
}

func TestTemplateDataVolumeIsJudgedForTheVMServiceAccount(t *testing.T) {
	j := newJudge(t)
	ctx := context.Background()
	controller := &user.DefaultInfo{Name: controllerUser}

	dv, p := templateDV("vm", "uid-vm", "golden")
	got, err := j.requesterFor(ctx, dv, p, controller)
	assert.NilError(t, err)
	assert.Equal(t, got.GetName(), "system:serviceaccount:dst:vm-runner")

	// Anyone else is judged as themselves, VM owner or not.
	alice := &user.DefaultInfo{Name: "alice"}
	got, err = j.requesterFor(ctx, dv, p, alice)
	assert.NilError(t, err)
	assert.Equal(t, got.GetName(), "alice")

	// The controller without a VM owner is judged as itself: it may clone nothing.
	plain, pp := templateDV("", "", "golden")
	got, err = j.requesterFor(ctx, plain, pp, controller)
	assert.NilError(t, err)
	assert.Equal(t, got.GetName(), controllerUser)
}

func TestTemplateDataVolumeMustMatchItsVM(t *testing.T) {
	j := newJudge(t)
	ctx := context.Background()
	controller := &user.DefaultInfo{Name: controllerUser}
	for name, tc := range map[string]struct {
		owner, uid, source, want string
	}{
		"missing VM":       {"gone", "uid-vm", "golden", "does not exist"},
		"another VM's UID": {"vm", "uid-other", "golden", "not the owner's uid-other"},
		"another source":   {"vm", "uid-vm", "secret-disk", "clones src/golden, not src/secret-disk"},
		"no such template": {"vm", "uid-vm", "golden", "no dataVolumeTemplate named other"},
	} {
		t.Run(name, func(t *testing.T) {
			dv, p := templateDV(tc.owner, tc.uid, tc.source)
			if name == "no such template" {
				dv.Name = "other"
			}
			_, err := j.requesterFor(ctx, dv, p, controller)
			assert.ErrorContains(t, err, tc.want)
		})
	}
}
