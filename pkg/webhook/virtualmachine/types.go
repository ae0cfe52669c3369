package virtualmachine

import (
	"fmt"

	"github.com/datavolume/datavolume/pkg/kubevirt"
)

// The VM as admission reads it: pkg/kubevirt's reading, which
// datavolume-apiserver and the controller share, so all three agree on
// whose permission a template's clone needs.
type (
	virtualMachine     = kubevirt.VirtualMachine
	dataVolumeTemplate = kubevirt.DataVolumeTemplate
	objectMeta         = kubevirt.ObjectMeta
)

// decodeVirtualMachine reads an admitted object.
func decodeVirtualMachine(raw []byte) (*virtualMachine, error) {
	if len(raw) == 0 {
		return nil, fmt.Errorf("the request carries no object")
	}
	return kubevirt.Decode(raw)
}
