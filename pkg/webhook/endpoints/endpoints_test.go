package endpoints_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"gotest.tools/v3/assert"

	"github.com/datavolume/datavolume/pkg/webhook"
	"github.com/datavolume/datavolume/pkg/webhook/endpoints"
	"github.com/datavolume/datavolume/pkg/webhook/internal/endpointstest"
)

func TestHandlerRoutes(t *testing.T) {
	handler := endpoints.New(endpointstest.Dependencies(t, func() bool { return true }))

	t.Run("mutate-datavolumes fills the clone size", func(t *testing.T) {
		resp := endpointstest.Answer(t, endpointstest.Post(handler, webhook.MutateDataVolumesPath, endpointstest.DataVolumeReview(t)))
		assert.Assert(t, resp.Allowed)
		assert.Equal(t, string(resp.Patch), `[{"op":"add","path":"/spec/storage/resources/requests/storage","value":"2Gi"}]`)
	})
	t.Run("validate-datavolumes allows the clone", func(t *testing.T) {
		resp := endpointstest.Answer(t, endpointstest.Post(handler, webhook.ValidateDataVolumesPath, endpointstest.DataVolumeReview(t)))
		assert.Assert(t, resp.Allowed)
		assert.Assert(t, resp.Patch == nil)
	})
	t.Run("validate-virtualmachines checks and annotates the clone", func(t *testing.T) {
		resp := endpointstest.Answer(t, endpointstest.Post(handler, webhook.ValidateVirtualMachinesPath, endpointstest.VirtualMachineReview(t)))
		assert.Assert(t, resp.Allowed)
		assert.DeepEqual(t, resp.AuditAnnotations, map[string]string{
			"decision": "allow", "reason": "test", "source": "src/disk", "target": "target/root", "serviceaccount": "target/default",
		})
	})
	t.Run("a DataVolume review sent to the VM endpoint is refused", func(t *testing.T) {
		resp := endpointstest.Answer(t, endpointstest.Post(handler, webhook.ValidateVirtualMachinesPath, endpointstest.DataVolumeReview(t)))
		assert.Assert(t, !resp.Allowed)
		assert.Equal(t, resp.Result.Code, int32(http.StatusBadRequest))
	})
	t.Run("healthz", func(t *testing.T) {
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
		assert.Equal(t, rec.Code, http.StatusOK)
	})
	t.Run("unknown path", func(t *testing.T) {
		assert.Equal(t, endpointstest.Post(handler, "/validate-pods", endpointstest.DataVolumeReview(t)).Code, http.StatusNotFound)
	})
}

func TestHandlerWaitsForReadiness(t *testing.T) {
	var ready bool
	handler := endpoints.New(endpointstest.Dependencies(t, func() bool { return ready }))

	get := func(path string) int {
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return rec.Code
	}
	assert.Equal(t, get("/healthz"), http.StatusOK)
	assert.Equal(t, get("/readyz"), http.StatusServiceUnavailable)
	for _, path := range []string{webhook.MutateDataVolumesPath, webhook.ValidateDataVolumesPath, webhook.ValidateVirtualMachinesPath} {
		assert.Equal(t, endpointstest.Post(handler, path, endpointstest.DataVolumeReview(t)).Code, http.StatusServiceUnavailable, path)
	}

	ready = true
	assert.Equal(t, get("/readyz"), http.StatusOK)
	assert.Equal(t, endpointstest.Post(handler, webhook.ValidateDataVolumesPath, endpointstest.DataVolumeReview(t)).Code, http.StatusOK)
}
