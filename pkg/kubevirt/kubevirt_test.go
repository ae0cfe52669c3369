package kubevirt

import (
	"testing"

	"gotest.tools/v3/assert"
)

func TestServiceAccountNameIsFoundAsKubeVirtFindsIt(t *testing.T) {
	for _, tc := range []struct {
		name, vm, want string
	}{
		{"no template", `{"spec":{}}`, "default"},
		{"nothing named", `{"spec":{"template":{"spec":{"volumes":[{"name":"root","dataVolume":{"name":"d"}}]}}}}`, "default"},
		{"a serviceAccount volume", `{"spec":{"template":{"spec":{"volumes":[{"name":"sa","serviceAccount":{"serviceAccountName":"builder"}}]}}}}`, "builder"},
		{"serviceAccountName first", `{"spec":{"template":{"spec":{"serviceAccountName":"runner","volumes":[{"name":"sa","serviceAccount":{"serviceAccountName":"builder"}}]}}}}`, "runner"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vm, err := Decode([]byte(tc.vm))
			assert.NilError(t, err)
			assert.Equal(t, vm.ServiceAccountName(), tc.want)
		})
	}
}

func TestDecodeIsCaseSensitive(t *testing.T) {
	vm, err := Decode([]byte(`{"spec":{"template":{"spec":{"ServiceAccountName":"x"}}}}`))
	assert.NilError(t, err)
	assert.Equal(t, vm.ServiceAccountName(), "default")
	_, err = Decode(nil)
	assert.ErrorContains(t, err, "no VirtualMachine")
}

func TestTemplateByName(t *testing.T) {
	vm, err := Decode([]byte(`{"spec":{"dataVolumeTemplates":[{"metadata":{"name":"a"},"spec":{"x":1}},{"metadata":{"name":"b","labels":{"l":"v"}}}]}}`))
	assert.NilError(t, err)
	assert.Equal(t, vm.Template("b").Metadata.Labels["l"], "v")
	assert.Equal(t, string(vm.Template("a").Spec), `{"x":1}`)
	assert.Assert(t, vm.Template("c") == nil)
}
