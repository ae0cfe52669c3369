package virtualmachine

import (
	"encoding/json"
	"fmt"

	sigsjson "sigs.k8s.io/json"
)

// virtualMachine is the part of a VirtualMachine admission reads; v1 and
// v1alpha3 share this JSON.
type virtualMachine struct {
	Metadata objectMeta         `json:"metadata"`
	Spec     virtualMachineSpec `json:"spec"`
}

type objectMeta struct {
	Name         string `json:"name"`
	GenerateName string `json:"generateName"`
	Namespace    string `json:"namespace"`
}

type virtualMachineSpec struct {
	DataVolumeTemplates []dataVolumeTemplate `json:"dataVolumeTemplates"`
	Template            *instanceTemplate    `json:"template"`
}

// dataVolumeTemplate keeps its spec raw: it is decoded as a cdi v1beta1
// DataVolumeSpec by the DataVolume decoder, defaults and conversion included.
type dataVolumeTemplate struct {
	Metadata objectMeta      `json:"metadata"`
	Spec     json.RawMessage `json:"spec"`
}

type instanceTemplate struct {
	Spec struct {
		Volumes []volume `json:"volumes"`
	} `json:"spec"`
}

type volume struct {
	Name           string                `json:"name"`
	ServiceAccount *serviceAccountVolume `json:"serviceAccount"`
}

type serviceAccountVolume struct {
	ServiceAccountName string `json:"serviceAccountName"`
}

// decodeVirtualMachine reads the fields above from an admitted object,
// case-sensitively as the API server does.
func decodeVirtualMachine(raw []byte) (*virtualMachine, error) {
	if len(raw) == 0 {
		return nil, fmt.Errorf("the request carries no object")
	}
	var vm virtualMachine
	if err := sigsjson.UnmarshalCaseSensitivePreserveInts(raw, &vm); err != nil {
		return nil, fmt.Errorf("decoding the VirtualMachine: %w", err)
	}
	return &vm, nil
}

// defaultServiceAccount is the account a VM's pod runs as unless a
// serviceAccount volume names another.
const defaultServiceAccount = "default"

// serviceAccountName is the service account the VM's pod runs as.
func (vm *virtualMachine) serviceAccountName() string {
	if vm.Spec.Template == nil {
		return defaultServiceAccount
	}
	for _, v := range vm.Spec.Template.Spec.Volumes {
		if v.ServiceAccount != nil && v.ServiceAccount.ServiceAccountName != "" {
			return v.ServiceAccount.ServiceAccountName
		}
	}
	return defaultServiceAccount
}

// name is the VM's name, or its generateName prefix.
func (vm *virtualMachine) name() string {
	if vm.Metadata.Name != "" {
		return vm.Metadata.Name
	}
	return vm.Metadata.GenerateName
}
