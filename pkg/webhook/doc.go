// Package webhook is the admission webhook of DataVolumes and of KubeVirt
// VirtualMachines' dataVolumeTemplates. Its subpackages are:
//
//   - admission: the AdmissionReview plumbing (decode, limits, answer) and
//     the helpers handlers answer with;
//   - datavolume: the DataVolume rules that need lookups (source size,
//     volume modes, source in use or missing) and the mutation that fills a
//     clone's size;
//   - virtualmachine: the rules of dataVolumeTemplates, including whether
//     the VM's service account may clone across namespaces;
//   - endpoints: the HTTP paths, routed to those handlers, and health checks;
//   - server: flags, serving certificates, informers and the HTTPS server.
package webhook

// The paths the webhook configurations call.
const (
	MutateDataVolumesPath       = "/mutate-datavolumes"
	ValidateDataVolumesPath     = "/validate-datavolumes"
	ValidateVirtualMachinesPath = "/validate-virtualmachines"
)
