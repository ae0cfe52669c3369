// Package endpointstest holds the reviews and dependencies the tests of the
// webhook's endpoints and server send and use.
package endpointstest

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
	"github.com/datavolume/datavolume/pkg/plan"
	"github.com/datavolume/datavolume/pkg/webhook/endpoints"
	"github.com/datavolume/datavolume/pkg/webhook/internal/webhooktest"
)

// Dependencies are listers with a 2Gi source claim src/disk, a pod
// using another claim, and a clone authorizer allowing src/disk only.
func Dependencies(t testing.TB, ready func() bool) endpoints.Dependencies {
	t.Helper()
	claims, pods := webhooktest.Listers(t,
		webhooktest.BoundClaim("src", "disk", "2Gi"),
		webhooktest.BoundClaim("src", "busy", "1Gi"),
		webhooktest.PodUsing("src", "virt-launcher-busy", "busy", "Running"),
	)
	return endpoints.Dependencies{
		Claims: claims,
		Pods:   pods,
		AuthorizeClone: func(_ context.Context, req cloneauth.Request) (cloneauth.Decision, error) {
			allowed := req.SourceNamespace == "src" && req.SourceName == "disk"
			return cloneauth.Decision{Allowed: allowed, Checked: true, Reason: "test"}, nil
		},
		FilesystemOverhead: plan.DefaultFilesystemOverhead,
		Ready:              ready,
		Log:                logr.Discard(),
	}
}

// Review is an AdmissionReview (v1) of a create of the object.
func Review(t testing.TB, group, version, kind, resource, object string) []byte {
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

// CloneDataVolume is the DataVolume of DataVolumeReview.
const CloneDataVolume = `
apiVersion: cdi.kubevirt.io/v1beta1
kind: DataVolume
metadata: {name: clone, namespace: target}
spec:
  source: {pvc: {namespace: src, name: disk}}
  storage: {resources: {requests: {}}}
`

// CloneVirtualMachine is the VirtualMachine of VirtualMachineReview.
const CloneVirtualMachine = `
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

// DataVolumeReview is a review of a DataVolume cloning src/disk into
// namespace target, its size left to the webhook.
func DataVolumeReview(t testing.TB) []byte {
	return Review(t, "cdi.kubevirt.io", "v1beta1", "DataVolume", "datavolumes", CloneDataVolume)
}

// VirtualMachineReview is a review of a VirtualMachine in namespace target
// whose one template clones src/disk.
func VirtualMachineReview(t testing.TB) []byte {
	return Review(t, "kubevirt.io", "v1", "VirtualMachine", "virtualmachines", CloneVirtualMachine)
}

// Post sends body to handler at path as the API server would.
func Post(handler http.Handler, path string, body []byte) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	handler.ServeHTTP(rec, req)
	return rec
}

// Answer is the response of a 200 review answer to uid-1.
func Answer(t *testing.T, rec *httptest.ResponseRecorder) *admissionv1.AdmissionResponse {
	t.Helper()
	assert.Equal(t, rec.Code, http.StatusOK, rec.Body.String())
	var out admissionv1.AdmissionReview
	assert.NilError(t, json.Unmarshal(rec.Body.Bytes(), &out))
	assert.Equal(t, out.Response.UID, types.UID("uid-1"))
	return out.Response
}
