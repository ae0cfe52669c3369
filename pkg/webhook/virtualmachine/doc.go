// Package virtualmachine admits KubeVirt VirtualMachines (kubevirt.io v1 and
// v1alpha3) by their dataVolumeTemplates: each must name a DataVolume in the
// VM's namespace whose spec passes the DataVolume rules, and a clone from
// another namespace must be allowed for the VM's service account. The clone
// check is injected (KubeVirt's cloneAuthFunc seam), so the rules are tested
// without an API server; every decision it makes is returned as audit
// annotations. The clone is authorized before its source claim is looked
// at: a refused VM is told the permission to ask for, and nothing of the
// claim (whether it exists, its size, volume mode or the pods using it).
//
// Only the fields read here are decoded, into small local structs: this
// package does not depend on kubevirt.io/api.
package virtualmachine
