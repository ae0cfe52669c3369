package apiserver

import (
	"context"
	"encoding/json"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/client-go/dynamic"

	"github.com/datavolume/datavolume/pkg/apis/cdi"
	"github.com/datavolume/datavolume/pkg/apis/cdi/v1beta1"
	"github.com/datavolume/datavolume/pkg/cloneauth"
	"github.com/datavolume/datavolume/pkg/kubevirt"
	"github.com/datavolume/datavolume/pkg/plan"
)

// vmTemplateJudge decides whose permission a clone DataVolume created for a
// VirtualMachine's dataVolumeTemplates needs. Without KubeVirt,
// datavolume-controller creates them, as virt-controller would; it holds no
// clone permission of its own (or it could obtain a grant for any clone),
// so such a DataVolume is judged for the VM's ServiceAccount, as KubeVirt
// judges it, and only when the VM exists, controls it, and has a template
// of that name cloning that source.
type vmTemplateJudge struct {
	// creator is the user name of the controller that creates templates'
	// DataVolumes.
	creator string
	vms     dynamic.NamespaceableResourceInterface
}

func newVMTemplateJudge(creator string, client dynamic.Interface) *vmTemplateJudge {
	if creator == "" {
		return nil
	}
	return &vmTemplateJudge{creator: creator, vms: client.Resource(kubevirt.VirtualMachines)}
}

// requesterFor is who the clone check asks about: the VM's ServiceAccount
// for a template's DataVolume made by the creator, otherwise the requester.
func (j *vmTemplateJudge) requesterFor(ctx context.Context, dv *cdi.DataVolume, p *plan.Plan, requester user.Info) (user.Info, error) {
	if j == nil || requester.GetName() != j.creator {
		return requester, nil
	}
	ref := metav1.GetControllerOfNoCopy(dv)
	if ref == nil || ref.Kind != "VirtualMachine" {
		return requester, nil
	}
	if gv, err := schema.ParseGroupVersion(ref.APIVersion); err != nil || gv.Group != kubevirt.Group {
		return requester, nil
	}
	forbidden := func(format string, args ...any) error {
		return apierrors.NewForbidden(cdi.Resource("datavolumes"), dv.Name, fmt.Errorf(format, args...))
	}
	obj, err := j.vms.Namespace(dv.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, forbidden("the VirtualMachine %s/%s that would own this DataVolume does not exist", dv.Namespace, ref.Name)
	}
	if err != nil {
		return nil, apierrors.NewInternalError(fmt.Errorf("reading VirtualMachine %s/%s: %w", dv.Namespace, ref.Name, err))
	}
	if obj.GetUID() != ref.UID {
		return nil, forbidden("VirtualMachine %s/%s has UID %s, not the owner's %s", dv.Namespace, ref.Name, obj.GetUID(), ref.UID)
	}
	raw, err := obj.MarshalJSON()
	if err != nil {
		return nil, apierrors.NewInternalError(err)
	}
	vm, err := kubevirt.Decode(raw)
	if err != nil {
		return nil, forbidden("%v", err)
	}
	template := vm.Template(dv.Name)
	if template == nil {
		return nil, forbidden("VirtualMachine %s/%s has no dataVolumeTemplate named %s", dv.Namespace, ref.Name, dv.Name)
	}
	var spec v1beta1.DataVolumeSpec
	if err := json.Unmarshal(template.Spec, &spec); err != nil {
		return nil, forbidden("reading dataVolumeTemplate %s of VirtualMachine %s/%s: %v", dv.Name, dv.Namespace, ref.Name, err)
	}
	want := plan.ClaimRef{Namespace: dv.Namespace}
	if spec.Source != nil && spec.Source.PVC != nil {
		want.Name = spec.Source.PVC.Name
		if spec.Source.PVC.Namespace != "" {
			want.Namespace = spec.Source.PVC.Namespace
		}
	}
	if p.CloneSource == nil || *p.CloneSource != want {
		return nil, forbidden("dataVolumeTemplate %s of VirtualMachine %s/%s clones %s, not %s", dv.Name, dv.Namespace, ref.Name, want, p.CloneSource)
	}
	return cloneauth.ServiceAccountUser(dv.Namespace, vm.ServiceAccountName()), nil
}
