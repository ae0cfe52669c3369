package admission

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"

	admissionv1 "k8s.io/api/admission/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Response is a Handler's decision. Build it with Allowed, Denied, Invalid,
// Errored or Patched, then add WithWarnings and WithAuditAnnotations; the
// plumbing fills in the UID and encodes the patches.
type Response struct {
	admissionv1.AdmissionResponse
	// Patches are the JSON patch operations of a mutation.
	Patches []PatchOperation
}

// PatchOperation is one RFC 6902 JSON patch operation.
type PatchOperation struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value,omitempty"`
}

// Allowed admits the request; message, if any, says why.
func Allowed(message string) Response {
	resp := Response{AdmissionResponse: admissionv1.AdmissionResponse{Allowed: true}}
	resp.Result = &metav1.Status{Status: metav1.StatusSuccess, Code: http.StatusOK, Message: message}
	return resp
}

// Patched admits the request with changes to the object.
func Patched(message string, patches ...PatchOperation) Response {
	resp := Allowed(message)
	resp.Patches = patches
	return resp
}

// Denied refuses the request as forbidden (403).
func Denied(message string) Response {
	return Rejected(metav1.Status{Code: http.StatusForbidden, Reason: metav1.StatusReasonForbidden, Message: message})
}

// Invalid refuses an object whose fields break rules (422); the status lists
// every error as a cause with its field path.
func Invalid(kind schema.GroupKind, name string, errs field.ErrorList) Response {
	return Rejected(apierrors.NewInvalid(kind, name, errs).ErrStatus)
}

// Rejected refuses the request with a prepared status, e.g. an
// apierrors.StatusError's ErrStatus.
func Rejected(status metav1.Status) Response {
	status.Status = metav1.StatusFailure
	return Response{AdmissionResponse: admissionv1.AdmissionResponse{Allowed: false, Result: &status}}
}

// Errored refuses the request because the webhook could not decide it:
// code is 400 for a request it cannot read, 500 for its own failure.
func Errored(code int32, err error) Response {
	return Rejected(metav1.Status{Code: code, Reason: reasonForCode(code), Message: err.Error()})
}

// WithWarnings adds warnings that the client shows to the user.
func (r Response) WithWarnings(warnings ...string) Response {
	r.Warnings = append(append([]string(nil), r.Warnings...), warnings...)
	return r
}

// WithAuditAnnotations adds annotations to the request's audit event. Keys
// may not contain "/": kube-apiserver prefixes them with the webhook's name.
func (r Response) WithAuditAnnotations(annotations map[string]string) Response {
	if len(annotations) == 0 {
		return r
	}
	merged := maps.Clone(r.AuditAnnotations)
	if merged == nil {
		merged = make(map[string]string, len(annotations))
	}
	maps.Copy(merged, annotations)
	r.AuditAnnotations = merged
	return r
}

// complete binds the response to the request's UID and encodes its patches.
func (r Response) complete(req Request) (admissionv1.AdmissionResponse, error) {
	out := r.AdmissionResponse
	out.UID = req.UID
	if len(r.Patches) == 0 {
		return out, nil
	}
	if !out.Allowed {
		return out, fmt.Errorf("a refusal cannot carry patches")
	}
	patch, err := json.Marshal(r.Patches)
	if err != nil {
		return out, fmt.Errorf("encoding the JSON patch: %w", err)
	}
	patchType := admissionv1.PatchTypeJSONPatch
	out.Patch, out.PatchType = patch, &patchType
	return out, nil
}

func reasonForCode(code int32) metav1.StatusReason {
	switch code {
	case http.StatusBadRequest:
		return metav1.StatusReasonBadRequest
	case http.StatusForbidden:
		return metav1.StatusReasonForbidden
	case http.StatusRequestEntityTooLarge:
		return metav1.StatusReasonRequestEntityTooLarge
	case http.StatusUnsupportedMediaType:
		return metav1.StatusReasonUnsupportedMediaType
	default:
		return metav1.StatusReasonInternalError
	}
}
