// Package fuzzer fills cdi.kubevirt.io objects with random but valid-shaped
// values for the round-trip test.
package fuzzer

import (
	runtimeserializer "k8s.io/apimachinery/pkg/runtime/serializer"
	"sigs.k8s.io/randfill"

	"github.com/datavolume/datavolume/pkg/apis/cdi"
)

// Funcs returns the fuzzer functions of the group. Defaulted fields are kept
// set, since defaulting runs on decode and would otherwise differ.
var Funcs = func(_ runtimeserializer.CodecFactory) []interface{} {
	return []interface{}{
		func(s *cdi.DataVolumeSpec, c randfill.Continue) {
			c.FillNoCustom(s)
			if s.ContentType == "" {
				s.ContentType = cdi.DataVolumeKubeVirt
			}
			if s.Source != nil && s.Source.Registry != nil && s.Source.Registry.PullMethod == "" {
				s.Source.Registry.PullMethod = cdi.RegistryPullPod
			}
		},
	}
}
