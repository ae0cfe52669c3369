package endpoints_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"

	"github.com/datavolume/datavolume/pkg/webhook"
	"github.com/datavolume/datavolume/pkg/webhook/endpoints"
	"github.com/datavolume/datavolume/pkg/webhook/internal/endpointstest"
)

// FuzzAdmissionReview feeds arbitrary bodies to every admission endpoint:
// the answer is always a valid HTTP status, a 200 always carries a review
// with a response, and no handler ever panics (a recovered panic would show
// as a 500 inside the review). The seeds run as a normal test.
func FuzzAdmissionReview(f *testing.F) {
	paths := []string{webhook.MutateDataVolumesPath, webhook.ValidateDataVolumesPath, webhook.ValidateVirtualMachinesPath}
	for route := range paths {
		f.Add(uint8(route), endpointstest.DataVolumeReview(f))
		f.Add(uint8(route), endpointstest.VirtualMachineReview(f))
	}
	f.Add(uint8(0), []byte{})
	f.Add(uint8(1), []byte("{"))
	f.Add(uint8(2), []byte("null"))
	f.Add(uint8(0), []byte(`{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{"uid":"x"}}`))
	f.Add(uint8(1), []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"x","operation":"UPDATE",`+
		`"resource":{"group":"cdi.kubevirt.io","resource":"datavolumes"},"object":{"spec":{}},"oldObject":null}}`))
	f.Add(uint8(2), []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"x","operation":"CREATE",`+
		`"resource":{"group":"kubevirt.io","resource":"virtualmachines"},"object":{"spec":{"dataVolumeTemplates":[null,{},{"spec":null}]}}}}`))
	f.Add(uint8(0), []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"x","operation":"CREATE",`+
		`"kind":{"group":"cdi.kubevirt.io","version":"v1alpha1","kind":"DataVolume"},"resource":{"group":"cdi.kubevirt.io","resource":"datavolumes"},`+
		`"object":{"spec":{"source":{"pvc":{"name":"disk","namespace":"src"}},"storage":{"resources":null}}}}}`))

	handler := endpoints.New(endpointstest.Dependencies(f, func() bool { return true }))
	f.Fuzz(func(t *testing.T, route uint8, body []byte) {
		rec := endpointstest.Post(handler, paths[int(route)%len(paths)], body)
		switch rec.Code {
		case http.StatusOK:
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType:
			return
		default:
			t.Fatalf("unexpected HTTP status %d: %s", rec.Code, rec.Body)
		}
		var review admissionv1.AdmissionReview
		if err := json.Unmarshal(rec.Body.Bytes(), &review); err != nil {
			t.Fatalf("a 200 that is not a review: %v: %s", err, rec.Body)
		}
		if review.Response == nil || review.Response.UID == "" {
			t.Fatalf("a review without a response bound to the request: %s", rec.Body)
		}
		if result := review.Response.Result; result != nil && (result.Code == http.StatusInternalServerError ||
			strings.Contains(result.Message, "internal error")) {
			t.Fatalf("the handler failed: %s", result.Message)
		}
	})
}
