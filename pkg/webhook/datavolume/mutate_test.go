package datavolume

import (
	"context"
	"encoding/json"
	"testing"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	"gotest.tools/v3/assert"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/datavolume/datavolume/pkg/webhook/admission"
)

func TestMutateFillsCloneSize(t *testing.T) {
	const header = `
apiVersion: cdi.kubevirt.io/v1beta1
kind: DataVolume
metadata: {name: clone}
spec:
  source: {pvc: {namespace: src, name: disk}}
`
	tests := []struct {
		name      string
		objects   []runtime.Object
		manifest  string
		operation admissionv1.Operation
		wantPatch []admission.PatchOperation
		// wantSize is the size after the patch is applied.
		wantSize string
	}{{
		name:      "storage with empty requests gets the source's size",
		objects:   []runtime.Object{boundClaim("src", "disk", "2Gi")},
		manifest:  header + "  storage: {accessModes: [ReadWriteOnce], resources: {requests: {}}}\n",
		wantPatch: []admission.PatchOperation{{Op: "add", Path: "/spec/storage/resources/requests/storage", Value: "2Gi"}},
		wantSize:  "2Gi",
	}, {
		name:      "storage without resources gets them",
		objects:   []runtime.Object{boundClaim("src", "disk", "2Gi")},
		manifest:  header + "  storage: {}\n",
		wantPatch: []admission.PatchOperation{{Op: "add", Path: "/spec/storage/resources", Value: map[string]any{"requests": map[string]any{"storage": "2Gi"}}}},
		wantSize:  "2Gi",
	}, {
		name:      "storage with resources but no requests gets requests",
		objects:   []runtime.Object{boundClaim("src", "disk", "2Gi")},
		manifest:  header + "  storage: {resources: {}}\n",
		wantPatch: []admission.PatchOperation{{Op: "add", Path: "/spec/storage/resources/requests", Value: map[string]any{"storage": "2Gi"}}},
		wantSize:  "2Gi",
	}, {
		name:      "an unbound source gives its request",
		objects:   []runtime.Object{boundClaim("src", "disk", "3Gi", unbound)},
		manifest:  header + "  storage: {resources: {requests: {}}}\n",
		wantPatch: []admission.PatchOperation{{Op: "add", Path: "/spec/storage/resources/requests/storage", Value: "3Gi"}},
		wantSize:  "3Gi",
	}, {
		name:      "a Block source into a Filesystem target gets room for the overhead",
		objects:   []runtime.Object{boundClaim("src", "disk", "2Gi", blockMode)},
		manifest:  header + "  storage: {volumeMode: Filesystem, resources: {requests: {}}}\n",
		wantPatch: []admission.PatchOperation{{Op: "add", Path: "/spec/storage/resources/requests/storage", Value: "2168Mi"}},
		wantSize:  "2168Mi",
	}, {
		name:      "a Block source into a Block target gets its size",
		objects:   []runtime.Object{boundClaim("src", "disk", "2Gi", blockMode)},
		manifest:  header + "  storage: {volumeMode: Block, resources: {requests: {}}}\n",
		wantPatch: []admission.PatchOperation{{Op: "add", Path: "/spec/storage/resources/requests/storage", Value: "2Gi"}},
		wantSize:  "2Gi",
	}, {
		name:     "a given size is left alone",
		objects:  []runtime.Object{boundClaim("src", "disk", "2Gi")},
		manifest: header + "  storage: {resources: {requests: {storage: 1Gi}}}\n",
	}, {
		name:     "spec.pvc is never rewritten",
		objects:  []runtime.Object{boundClaim("src", "disk", "2Gi")},
		manifest: header + "  pvc: {accessModes: [ReadWriteOnce]}\n",
	}, {
		name:     "a missing source leaves the size to the controller",
		manifest: header + "  storage: {}\n",
	}, {
		name:    "an import is not a clone",
		objects: []runtime.Object{boundClaim("src", "disk", "2Gi")},
		manifest: `
apiVersion: cdi.kubevirt.io/v1beta1
kind: DataVolume
metadata: {name: imported}
spec:
  source: {blank: {}}
  storage: {}
`,
	}, {
		name:      "updates are not mutated",
		objects:   []runtime.Object{boundClaim("src", "disk", "2Gi")},
		manifest:  header + "  storage: {}\n",
		operation: admissionv1.Update,
	}, {
		name:      "v1alpha1 is mutated the same way",
		objects:   []runtime.Object{boundClaim("src", "disk", "2Gi")},
		manifest:  "apiVersion: cdi.kubevirt.io/v1alpha1\nkind: DataVolume\nmetadata: {name: c}\nspec:\n  source: {pvc: {namespace: src, name: disk}}\n  storage: {resources: {requests: {}}}\n",
		wantPatch: []admission.PatchOperation{{Op: "add", Path: "/spec/storage/resources/requests/storage", Value: "2Gi"}},
		wantSize:  "2Gi",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			operation := tt.operation
			if operation == "" {
				operation = admissionv1.Create
			}
			req := dataVolumeRequest(t, operation, tt.manifest, tt.manifest)
			decoder := NewDecoder()
			resp := (&MutatingHandler{Rules: newRules(t, tt.objects...), Decoder: decoder}).Handle(context.Background(), req)
			assert.Assert(t, resp.Allowed, "result: %+v", resp.Result)
			assert.DeepEqual(t, resp.Patches, tt.wantPatch)
			if tt.wantSize == "" {
				return
			}

			// The patch applies to the object as sent and yields the size.
			encoded, err := json.Marshal(resp.Patches)
			assert.NilError(t, err)
			patch, err := jsonpatch.DecodePatch(encoded)
			assert.NilError(t, err)
			patched, err := patch.Apply(req.Object.Raw)
			assert.NilError(t, err)
			dv, err := decoder.DataVolume(patched, req.Kind)
			assert.NilError(t, err)
			size := dv.Spec.Storage.Resources.Requests[corev1.ResourceStorage]
			assert.Equal(t, size.String(), tt.wantSize)

			// And the patched object passes validation.
			req.Object.Raw = patched
			assert.Assert(t, validate(t, newRules(t, tt.objects...), req).Allowed)
		})
	}
}
