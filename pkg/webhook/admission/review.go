package admission

import (
	"errors"
	"fmt"

	admissionv1 "k8s.io/api/admission/v1"
	admissionv1beta1 "k8s.io/api/admission/v1beta1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	sigsjson "sigs.k8s.io/json"
)

// reviewKinds are the AdmissionReview versions the webhook speaks. Their
// request and response types are identical, so both decode into v1.
var reviewKinds = map[schema.GroupVersionKind]bool{
	admissionv1.SchemeGroupVersion.WithKind("AdmissionReview"):      true,
	admissionv1beta1.SchemeGroupVersion.WithKind("AdmissionReview"): true,
}

// decodeReview reads an AdmissionReview of either version. It returns the
// review's own apiVersion and kind, which the answer must repeat.
func decodeReview(body []byte) (metav1.TypeMeta, Request, error) {
	var review admissionv1.AdmissionReview
	// Case-sensitive, as the API server itself decodes JSON.
	if err := sigsjson.UnmarshalCaseSensitivePreserveInts(body, &review); err != nil {
		return metav1.TypeMeta{}, Request{}, fmt.Errorf("decoding the AdmissionReview: %w", err)
	}
	if !reviewKinds[review.GroupVersionKind()] {
		return metav1.TypeMeta{}, Request{}, fmt.Errorf("expected an AdmissionReview of admission.k8s.io/v1 or v1beta1, got apiVersion %q kind %q",
			review.APIVersion, review.Kind)
	}
	if review.Request == nil {
		return metav1.TypeMeta{}, Request{}, errors.New("the AdmissionReview has no request")
	}
	if review.Request.UID == "" {
		return metav1.TypeMeta{}, Request{}, errors.New("the AdmissionReview's request has no uid")
	}
	return review.TypeMeta, Request{AdmissionRequest: *review.Request}, nil
}

// encodeReview wraps a response in a review of the request's version.
func encodeReview(typeMeta metav1.TypeMeta, resp admissionv1.AdmissionResponse) *admissionv1.AdmissionReview {
	return &admissionv1.AdmissionReview{TypeMeta: typeMeta, Response: &resp}
}
