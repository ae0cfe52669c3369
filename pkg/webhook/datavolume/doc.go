// Package datavolume holds the DataVolume admission rules that need the
// cluster: a clone's size against its source claim (with filesystem
// overhead when the volume mode changes), volume-mode compatibility, and
// warnings for a source claim that is missing or in use. The static rules
// come from pkg/apis/cdi/validation and run first, so one call reports every
// problem of a spec. The same Rules serve VirtualMachine dataVolumeTemplates.
package datavolume
