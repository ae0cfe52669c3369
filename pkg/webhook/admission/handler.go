package admission

import (
	"context"

	admissionv1 "k8s.io/api/admission/v1"
)

// Request is the admission request of a review; v1beta1 reviews are decoded
// into the same (identical) v1 type.
type Request struct {
	admissionv1.AdmissionRequest
}

// Handler decides one admission request.
type Handler interface {
	Handle(ctx context.Context, req Request) Response
}

// HandlerFunc lets a function be a Handler.
type HandlerFunc func(ctx context.Context, req Request) Response

// Handle calls f.
func (f HandlerFunc) Handle(ctx context.Context, req Request) Response {
	return f(ctx, req)
}
