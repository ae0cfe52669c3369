// Package virtualmachine admits KubeVirt VirtualMachines (kubevirt.io v1 and
// v1alpha3) by their dataVolumeTemplates: each must name a DataVolume in the
// VM's namespace whose spec passes the DataVolume rules, and a clone from
// another namespace must be allowed for the VM's service account. The clone
// check is injected (KubeVirt's cloneAuthFunc seam), so the rules are tested
// without an API server; every decision it makes is returned as audit
// annotations.
//
// Only the fields read here are decoded, into small local structs: this
// package does not depend on kubevirt.io/api.
package virtualmachine
