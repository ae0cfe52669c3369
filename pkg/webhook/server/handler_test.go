package server

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/go-logr/logr"
	"gotest.tools/v3/assert"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"

	"github.com/datavolume/datavolume/pkg/cloneauth"
	"github.com/datavolume/datavolume/pkg/webhook"
	"github.com/datavolume/datavolume/pkg/webhook/datavolume"
	"github.com/datavolume/datavolume/pkg/webhook/internal/webhooktest"
)

// fixtureDependencies are listers with a 2Gi source claim src/disk, a pod
// using another claim, and a clone authorizer allowing src/disk only.
func fixtureDependencies(t testing.TB, ready func() bool) Dependencies {
	t.Helper()
	claims, pods := webhooktest.Listers(t,
		webhooktest.BoundClaim("src", "disk", "2Gi"),
		webhooktest.BoundClaim("src", "busy", "1Gi"),
		webhooktest.PodUsing("src", "virt-launcher-busy", "busy", "Running"),
	)
	return Dependencies{
		Claims: claims,
		Pods:   pods,
		AuthorizeClone: func(_ context.Context, req cloneauth.Request) (cloneauth.Decision, error) {
			allowed := req.SourceNamespace == "src" && req.SourceName == "disk"
			return cloneauth.Decision{Allowed: allowed, Checked: true, Reason: "test"}, nil
		},
		FilesystemOverhead: datavolume.DefaultFilesystemOverhead,
		Ready:              ready,
		Log:                logr.Discard(),
	}
}

// review is an AdmissionReview (v1) of a create of the object.
func review(t testing.TB, group, version, kind, resource, object string) []byte {
	t.Helper()
	body, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID:       "uid-1",
			Kind:      metav1.GroupVersionKind{Group: group, Version: version, Kind: kind},
			Resource:  metav1.GroupVersionResource{Group: group, Version: version, Resource: resource},
			Namespace: "target",
			Operation: admissionv1.Create,
			Object:    runtime.RawExtension{Raw: webhooktest.JSON(t, object)},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return body
}

const cloneDataVolume = `
apiVersion: cdi.kubevirt.io/v1beta1
kind: DataVolume
metadata: {name: clone, namespace: target}
spec:
  source: {pvc: {namespace: src, name: disk}}
  storage: {resources: {requests: {}}}
`

const cloneVirtualMachine = `
apiVersion: kubevirt.io/v1
kind: VirtualMachine
metadata: {name: vm, namespace: target}
spec:
  running: false
  template: {spec: {domain: {devices: {}}, volumes: [{name: root, dataVolume: {name: root}}]}}
  dataVolumeTemplates:
  - metadata: {name: root}
    spec:
      source: {pvc: {namespace: src, name: disk}}
      pvc: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 2Gi}}}
`

func dataVolumeReview(t testing.TB) []byte {
	return review(t, "cdi.kubevirt.io", "v1beta1", "DataVolume", "datavolumes", cloneDataVolume)
}

func virtualMachineReview(t testing.TB) []byte {
	return review(t, "kubevirt.io", "v1", "VirtualMachine", "virtualmachines", cloneVirtualMachine)
}

func post(handler http.Handler, path string, body []byte) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	handler.ServeHTTP(rec, req)
	return rec
}

func answer(t *testing.T, rec *httptest.ResponseRecorder) *admissionv1.AdmissionResponse {
	t.Helper()
	assert.Equal(t, rec.Code, http.StatusOK, rec.Body.String())
	var out admissionv1.AdmissionReview
	assert.NilError(t, json.Unmarshal(rec.Body.Bytes(), &out))
	assert.Equal(t, out.Response.UID, types.UID("uid-1"))
	return out.Response
}

func TestHandlerRoutes(t *testing.T) {
	handler := NewHandler(fixtureDependencies(t, func() bool { return true }))

	t.Run("mutate-datavolumes fills the clone size", func(t *testing.T) {
		resp := answer(t, post(handler, webhook.MutateDataVolumesPath, dataVolumeReview(t)))
		assert.Assert(t, resp.Allowed)
		assert.Equal(t, string(resp.Patch), `[{"op":"add","path":"/spec/storage/resources/requests/storage","value":"2Gi"}]`)
	})
	t.Run("validate-datavolumes allows the clone", func(t *testing.T) {
		resp := answer(t, post(handler, webhook.ValidateDataVolumesPath, dataVolumeReview(t)))
		assert.Assert(t, resp.Allowed)
		assert.Assert(t, resp.Patch == nil)
	})
	t.Run("validate-virtualmachines checks and annotates the clone", func(t *testing.T) {
		resp := answer(t, post(handler, webhook.ValidateVirtualMachinesPath, virtualMachineReview(t)))
		assert.Assert(t, resp.Allowed)
		assert.DeepEqual(t, resp.AuditAnnotations, map[string]string{
			"decision": "allow", "reason": "test", "source": "src/disk", "target": "target/root", "serviceaccount": "target/default",
		})
	})
	t.Run("a DataVolume review sent to the VM endpoint is refused", func(t *testing.T) {
		resp := answer(t, post(handler, webhook.ValidateVirtualMachinesPath, dataVolumeReview(t)))
		assert.Assert(t, !resp.Allowed)
		assert.Equal(t, resp.Result.Code, int32(http.StatusBadRequest))
	})
	t.Run("healthz", func(t *testing.T) {
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
		assert.Equal(t, rec.Code, http.StatusOK)
	})
	t.Run("unknown path", func(t *testing.T) {
		assert.Equal(t, post(handler, "/validate-pods", dataVolumeReview(t)).Code, http.StatusNotFound)
	})
}

func TestHandlerWaitsForReadiness(t *testing.T) {
	var ready bool
	handler := NewHandler(fixtureDependencies(t, func() bool { return ready }))

	get := func(path string) int {
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return rec.Code
	}
	assert.Equal(t, get("/healthz"), http.StatusOK)
	assert.Equal(t, get("/readyz"), http.StatusServiceUnavailable)
	for _, path := range []string{webhook.MutateDataVolumesPath, webhook.ValidateDataVolumesPath, webhook.ValidateVirtualMachinesPath} {
		assert.Equal(t, post(handler, path, dataVolumeReview(t)).Code, http.StatusServiceUnavailable, path)
	}

	ready = true
	assert.Equal(t, get("/readyz"), http.StatusOK)
	assert.Equal(t, post(handler, webhook.ValidateDataVolumesPath, dataVolumeReview(t)).Code, http.StatusOK)
}
