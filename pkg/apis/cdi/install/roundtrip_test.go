package install

import (
	"testing"

	"k8s.io/apimachinery/pkg/api/apitesting/roundtrip"

	cdifuzzer "github.com/datavolume/datavolume/pkg/apis/cdi/fuzzer"
)

// Every version must convert to the internal type and back without losing a
// field, in JSON and YAML.
func TestRoundTripTypes(t *testing.T) {
	roundtrip.RoundTripTestForAPIGroup(t, Install, cdifuzzer.Funcs)
}
