package datavolume

import (
	"context"
	"testing"

	"gotest.tools/v3/assert"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"

	"github.com/datavolume/datavolume/pkg/plan"
	"github.com/datavolume/datavolume/pkg/webhook/admission"
	"github.com/datavolume/datavolume/pkg/webhook/internal/webhooktest"
)

// newRules returns Rules over listers holding objects (claims and pods),
// with CDI's default filesystem overhead.
func newRules(t testing.TB, objects ...runtime.Object) *Rules {
	t.Helper()
	claims, pods := webhooktest.Listers(t, objects...)
	return &Rules{Lookups: Lookups{Claims: claims, Pods: pods}, FilesystemOverhead: plan.DefaultFilesystemOverhead}
}

// Fixture builders, short names for the tables.
var (
	boundClaim = webhooktest.BoundClaim
	blockMode  = webhooktest.BlockMode
	unbound    = webhooktest.Unbound
	requesting = webhooktest.Requesting
	podUsing   = webhooktest.PodUsing
)

// dataVolumeRequest is an admission request for the DataVolume in YAML,
// created (old empty) or updated from old, in namespace "target".
func dataVolumeRequest(t testing.TB, operation admissionv1.Operation, manifest, old string) admission.Request {
	t.Helper()
	obj := runtime.RawExtension{Raw: webhooktest.JSON(t, manifest)}
	var typeMeta metav1.TypeMeta
	assert.NilError(t, yaml.Unmarshal(obj.Raw, &typeMeta))
	gvk := typeMeta.GroupVersionKind()
	req := admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		UID:       types.UID("uid-1"),
		Kind:      metav1.GroupVersionKind{Group: gvk.Group, Version: gvk.Version, Kind: gvk.Kind},
		Resource:  metav1.GroupVersionResource{Group: "cdi.kubevirt.io", Version: gvk.Version, Resource: "datavolumes"},
		Namespace: "target",
		Operation: operation,
		Object:    obj,
	}}
	if old != "" {
		req.OldObject = runtime.RawExtension{Raw: webhooktest.JSON(t, old)}
	}
	return req
}

// cloneDV is a v1beta1 DataVolume cloning src/<source> into a spec.pvc
// of the given size and volume mode, with optional extra spec lines.
func cloneDV(source, size, mode string, extraSpec ...string) string {
	manifest := `
apiVersion: cdi.kubevirt.io/v1beta1
kind: DataVolume
metadata:
  name: clone
  namespace: target
spec:
  source:
    pvc:
      namespace: src
      name: ` + source + `
  pvc:
    accessModes: [ReadWriteOnce]
    resources:
      requests:
        storage: ` + size + `
`
	if mode != "" {
		manifest += "    volumeMode: " + mode + "\n"
	}
	for _, line := range extraSpec {
		manifest += "  " + line + "\n"
	}
	return manifest
}

// validate runs the validating handler on a request.
func validate(t testing.TB, rules *Rules, req admission.Request) admission.Response {
	t.Helper()
	return (&ValidatingHandler{Rules: rules, Decoder: NewDecoder()}).Handle(context.Background(), req)
}

// causes are the field paths and messages of a refusal, "field: message".
func causes(resp admission.Response) []string {
	if resp.Result == nil || resp.Result.Details == nil {
		return nil
	}
	var out []string
	for _, cause := range resp.Result.Details.Causes {
		out = append(out, cause.Field+": "+cause.Message)
	}
	return out
}
