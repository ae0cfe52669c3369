// +k8s:deepcopy-gen=package
// +groupName=cdi.kubevirt.io

// Package cdi holds the internal (hub) types of the cdi.kubevirt.io API group.
// Every served version converts through these types.
package cdi
