package admission

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	"gotest.tools/v3/assert"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

const reviewV1 = `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u-1","kind":{"group":"cdi.kubevirt.io","version":"v1beta1","kind":"DataVolume"},"resource":{"group":"cdi.kubevirt.io","version":"v1beta1","resource":"datavolumes"},"namespace":"ns","name":"dv","operation":"CREATE","userInfo":{"username":"alice"},"object":{"apiVersion":"cdi.kubevirt.io/v1beta1","kind":"DataVolume"}}}`

// serve posts body to a Webhook around handler and returns the answer.
func serve(t *testing.T, handler Handler, contentType string, body []byte) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/validate", bytes.NewReader(body))
	if body == nil {
		req.Body = http.NoBody
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	rec := httptest.NewRecorder()
	(&Webhook{Handler: handler, Log: logr.Discard()}).ServeHTTP(rec, req)
	return rec
}

func allow(context.Context, Request) Response { return Allowed("") }

func TestWebhookRefusesWhatIsNotAReview(t *testing.T) {
	tests := []struct {
		name        string
		contentType string
		body        []byte
		wantCode    int
		wantMessage string
	}{
		{"empty body", "application/json", nil, http.StatusBadRequest, "the request body is empty"},
		{"zero-length body", "application/json", []byte{}, http.StatusBadRequest, "the request body is empty"},
		{"body over 7 MiB", "application/json", bytes.Repeat([]byte(" "), MaxRequestBytes+1), http.StatusRequestEntityTooLarge, "larger than 7340032 bytes"},
		{"not JSON", "text/plain", []byte(reviewV1), http.StatusUnsupportedMediaType, `content type "text/plain"`},
		{"no content type", "", []byte(reviewV1), http.StatusUnsupportedMediaType, `content type ""`},
		{"YAML", "application/yaml", []byte(reviewV1), http.StatusUnsupportedMediaType, "must be sent as application/json"},
		{"malformed JSON", "application/json", []byte(`{"apiVersion":`), http.StatusBadRequest, "decoding the AdmissionReview"},
		{"another kind", "application/json", []byte(`{"apiVersion":"v1","kind":"Pod"}`), http.StatusBadRequest, `expected an AdmissionReview of admission.k8s.io/v1 or v1beta1, got apiVersion "v1" kind "Pod"`},
		{"no request", "application/json", []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`), http.StatusBadRequest, "has no request"},
		{"no uid", "application/json", []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{}}`), http.StatusBadRequest, "has no uid"},
		{"field names in the wrong case", "application/json", []byte(`{"APIVersion":"admission.k8s.io/v1","Kind":"AdmissionReview","request":{"uid":"x"}}`), http.StatusBadRequest, "expected an AdmissionReview"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := serve(t, HandlerFunc(allow), tt.contentType, tt.body)
			assert.Equal(t, rec.Code, tt.wantCode)
			assert.Equal(t, rec.Header().Get("Content-Type"), "application/json")
			var status metav1.Status
			assert.NilError(t, json.Unmarshal(rec.Body.Bytes(), &status))
			assert.Equal(t, status.Kind, "Status")
			assert.Equal(t, status.Code, int32(tt.wantCode))
			assert.Assert(t, strings.Contains(status.Message, tt.wantMessage), status.Message)
		})
	}
}

func TestWebhookRefusesOtherMethods(t *testing.T) {
	req := httptest.NewRequest(http.MethodGet, "/validate", nil)
	rec := httptest.NewRecorder()
	(&Webhook{Handler: HandlerFunc(allow), Log: logr.Discard()}).ServeHTTP(rec, req)
	assert.Equal(t, rec.Code, http.StatusMethodNotAllowed)
}

func TestWebhookEchoesVersionAndUID(t *testing.T) {
	for _, version := range []string{"admission.k8s.io/v1", "admission.k8s.io/v1beta1"} {
		t.Run(version, func(t *testing.T) {
			body := strings.Replace(reviewV1, "admission.k8s.io/v1", version, 1)
			var seen Request
			handler := HandlerFunc(func(_ context.Context, req Request) Response {
				seen = req
				return Allowed("")
			})
			rec := serve(t, handler, "application/json; charset=utf-8", []byte(body))
			assert.Equal(t, rec.Code, http.StatusOK)
			review := decodeAnswer(t, rec)
			assert.Equal(t, review.APIVersion, version)
			assert.Equal(t, review.Kind, "AdmissionReview")
			assert.Equal(t, review.Response.UID, types.UID("u-1"))
			assert.Assert(t, review.Response.Allowed)
			assert.Equal(t, seen.UserInfo.Username, "alice")
			assert.Equal(t, seen.Kind.Kind, "DataVolume")
			assert.Equal(t, string(seen.Object.Raw), `{"apiVersion":"cdi.kubevirt.io/v1beta1","kind":"DataVolume"}`)
		})
	}
}

func TestWebhookAnswersTheHandlersDecision(t *testing.T) {
	tests := []struct {
		name     string
		response Response
		want     admissionv1.AdmissionResponse
	}{{
		name:     "allowed with warnings and audit annotations",
		response: Allowed("fine").WithWarnings("careful").WithAuditAnnotations(map[string]string{"decision": "allow"}),
		want: admissionv1.AdmissionResponse{UID: "u-1", Allowed: true,
			Result:           &metav1.Status{Status: metav1.StatusSuccess, Code: 200, Message: "fine"},
			Warnings:         []string{"careful"},
			AuditAnnotations: map[string]string{"decision": "allow"}},
	}, {
		name:     "denied",
		response: Denied("no"),
		want: admissionv1.AdmissionResponse{UID: "u-1",
			Result: &metav1.Status{Status: metav1.StatusFailure, Code: 403, Reason: metav1.StatusReasonForbidden, Message: "no"}},
	}, {
		name:     "errored",
		response: Errored(http.StatusInternalServerError, errors.New("lister down")),
		want: admissionv1.AdmissionResponse{UID: "u-1",
			Result: &metav1.Status{Status: metav1.StatusFailure, Code: 500, Reason: metav1.StatusReasonInternalError, Message: "lister down"}},
	}, {
		name:     "patched",
		response: Patched("sized", PatchOperation{Op: "add", Path: "/spec/x", Value: "1Gi"}),
		want: admissionv1.AdmissionResponse{UID: "u-1", Allowed: true,
			Result:    &metav1.Status{Status: metav1.StatusSuccess, Code: 200, Message: "sized"},
			Patch:     []byte(`[{"op":"add","path":"/spec/x","value":"1Gi"}]`),
			PatchType: ptr(admissionv1.PatchTypeJSONPatch)},
	}, {
		name:     "a refusal with patches is an error of the handler",
		response: Response{AdmissionResponse: Denied("no").AdmissionResponse, Patches: []PatchOperation{{Op: "remove", Path: "/a"}}},
		want: admissionv1.AdmissionResponse{UID: "u-1",
			Result: &metav1.Status{Status: metav1.StatusFailure, Code: 500, Reason: metav1.StatusReasonInternalError, Message: "a refusal cannot carry patches"}},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			handler := HandlerFunc(func(context.Context, Request) Response { return tt.response })
			rec := serve(t, handler, "application/json", []byte(reviewV1))
			assert.Equal(t, rec.Code, http.StatusOK)
			assert.DeepEqual(t, *decodeAnswer(t, rec).Response, tt.want)
		})
	}
}

func TestWebhookSurvivesAPanickingHandler(t *testing.T) {
	handler := HandlerFunc(func(context.Context, Request) Response { panic("nil map") })
	rec := serve(t, handler, "application/json", []byte(reviewV1))
	assert.Equal(t, rec.Code, http.StatusOK)
	resp := decodeAnswer(t, rec).Response
	assert.Equal(t, resp.UID, types.UID("u-1"))
	assert.Assert(t, !resp.Allowed)
	assert.Equal(t, resp.Result.Code, int32(http.StatusInternalServerError))
	assert.Equal(t, resp.Result.Message, "internal error in the admission webhook while deciding DataVolume ns/dv; see its log")
}

func TestResponseHelpersDoNotShareState(t *testing.T) {
	base := Allowed("").WithAuditAnnotations(map[string]string{"a": "1"}).WithWarnings("w1")
	derived := base.WithAuditAnnotations(map[string]string{"b": "2"}).WithWarnings("w2")
	assert.DeepEqual(t, base.AuditAnnotations, map[string]string{"a": "1"})
	assert.DeepEqual(t, base.Warnings, []string{"w1"})
	assert.DeepEqual(t, derived.AuditAnnotations, map[string]string{"a": "1", "b": "2"})
	assert.DeepEqual(t, derived.Warnings, []string{"w1", "w2"})
}

func decodeAnswer(t *testing.T, rec *httptest.ResponseRecorder) *admissionv1.AdmissionReview {
	t.Helper()
	assert.Equal(t, rec.Header().Get("Content-Type"), "application/json")
	var review admissionv1.AdmissionReview
	assert.NilError(t, json.Unmarshal(rec.Body.Bytes(), &review))
	assert.Assert(t, review.Response != nil)
	return &review
}

func ptr[T any](v T) *T { return &v }
