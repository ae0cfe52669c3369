// Package kubevirt reads what datavolume needs of a KubeVirt
// VirtualMachine: its dataVolumeTemplates and the ServiceAccount its pod
// runs as. The webhook, datavolume-apiserver and the controller read VMs
// through it, so they agree on whose permission a template's clone needs.
package kubevirt

import (
	"context"
	"encoding/json"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	sigsjson "sigs.k8s.io/json"
)

// Group is KubeVirt's API group.
const Group = "kubevirt.io"

// VirtualMachines is the resource the controller and the apiserver read.
var VirtualMachines = schema.GroupVersionResource{Group: Group, Version: "v1", Resource: "virtualmachines"}

// CreatedByLabel is the label KubeVirt sets on what it creates for a VM:
// the VM's UID.
const CreatedByLabel = "kubevirt.io/created-by"

// DefaultServiceAccount is the account a VM's pod runs as unless its
// template names another.
const DefaultServiceAccount = "default"

// VirtualMachine is the part of a VirtualMachine datavolume reads; v1 and
// v1alpha3 share this JSON.
type VirtualMachine struct {
	Metadata ObjectMeta `json:"metadata"`
	Spec     Spec       `json:"spec"`
}

// ObjectMeta is the part of a VM's or a template's metadata read here.
type ObjectMeta struct {
	Name         string            `json:"name"`
	GenerateName string            `json:"generateName"`
	Namespace    string            `json:"namespace"`
	UID          types.UID         `json:"uid"`
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
}

// Spec is the part of a VM's spec read here.
type Spec struct {
	DataVolumeTemplates []DataVolumeTemplate `json:"dataVolumeTemplates"`
	Template            *InstanceTemplate    `json:"template"`
}

// DataVolumeTemplate keeps its spec raw: it is decoded as a cdi v1beta1
// DataVolumeSpec where it is used, defaults and conversion included.
type DataVolumeTemplate struct {
	Metadata ObjectMeta      `json:"metadata"`
	Spec     json.RawMessage `json:"spec"`
}

// InstanceTemplate is the VM's pod-to-be.
type InstanceTemplate struct {
	Spec struct {
		ServiceAccountName string   `json:"serviceAccountName"`
		Volumes            []Volume `json:"volumes"`
	} `json:"spec"`
}

// Volume is a VM volume; only the serviceAccount kind is read.
type Volume struct {
	Name           string                `json:"name"`
	ServiceAccount *ServiceAccountVolume `json:"serviceAccount"`
}

// ServiceAccountVolume names the ServiceAccount whose token the VM gets.
type ServiceAccountVolume struct {
	ServiceAccountName string `json:"serviceAccountName"`
}

// Decode reads a VM, case-sensitively as the API server does.
func Decode(raw []byte) (*VirtualMachine, error) {
	if len(raw) == 0 {
		return nil, fmt.Errorf("no VirtualMachine to read")
	}
	var vm VirtualMachine
	if err := sigsjson.UnmarshalCaseSensitivePreserveInts(raw, &vm); err != nil {
		return nil, fmt.Errorf("decoding the VirtualMachine: %w", err)
	}
	return &vm, nil
}

// ServiceAccountName is the ServiceAccount the VM's pod runs as, found as
// KubeVirt's virt-controller finds it when it authorizes a template's
// clone: spec.template.spec.serviceAccountName, else a serviceAccount
// volume's, else "default".
func (vm *VirtualMachine) ServiceAccountName() string {
	if vm.Spec.Template == nil {
		return DefaultServiceAccount
	}
	if name := vm.Spec.Template.Spec.ServiceAccountName; name != "" {
		return name
	}
	for _, v := range vm.Spec.Template.Spec.Volumes {
		if v.ServiceAccount != nil && v.ServiceAccount.ServiceAccountName != "" {
			return v.ServiceAccount.ServiceAccountName
		}
	}
	return DefaultServiceAccount
}

// Template is the VM's dataVolumeTemplate named name, or nil.
func (vm *VirtualMachine) Template(name string) *DataVolumeTemplate {
	for i := range vm.Spec.DataVolumeTemplates {
		if vm.Spec.DataVolumeTemplates[i].Metadata.Name == name {
			return &vm.Spec.DataVolumeTemplates[i]
		}
	}
	return nil
}

// Reader reads VirtualMachines from the API.
type Reader struct {
	Client dynamic.Interface
}

// ServiceAccountOf is the ServiceAccount of the VM namespace/name, which
// must have uid.
func (r Reader) ServiceAccountOf(ctx context.Context, namespace, name string, uid types.UID) (string, error) {
	obj, err := r.Client.Resource(VirtualMachines).Namespace(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("reading VirtualMachine %s/%s: %w", namespace, name, err)
	}
	if obj.GetUID() != uid {
		return "", fmt.Errorf("VirtualMachine %s/%s is another (UID %s, not %s)", namespace, name, obj.GetUID(), uid)
	}
	raw, err := obj.MarshalJSON()
	if err != nil {
		return "", err
	}
	vm, err := Decode(raw)
	if err != nil {
		return "", err
	}
	return vm.ServiceAccountName(), nil
}

// Name is the VM's name, or its generateName prefix.
func (vm *VirtualMachine) Name() string {
	if vm.Metadata.Name != "" {
		return vm.Metadata.Name
	}
	return vm.Metadata.GenerateName
}
