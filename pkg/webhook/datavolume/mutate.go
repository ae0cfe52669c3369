package datavolume

import (
	"context"
	"fmt"
	"net/http"

	admissionv1 "k8s.io/api/admission/v1"

	"github.com/datavolume/datavolume/pkg/webhook/admission"
)

// MutatingHandler fills in the size of a clone whose spec.storage leaves it
// out, from the source claim. It changes nothing else.
type MutatingHandler struct {
	Rules   *Rules
	Decoder *Decoder
}

var _ admission.Handler = (*MutatingHandler)(nil)

// Handle patches a created DataVolume when its clone size is missing.
func (h *MutatingHandler) Handle(ctx context.Context, req admission.Request) admission.Response {
	if err := checkResource(req); err != nil {
		return admission.Errored(http.StatusBadRequest, err)
	}
	if req.SubResource != "" || req.Operation != admissionv1.Create {
		return admission.Allowed("")
	}
	dv, err := h.Decoder.DataVolume(req.Object.Raw, req.Kind)
	if err != nil {
		return admission.Errored(http.StatusBadRequest, err)
	}
	size, source, ok, err := h.Rules.MissingCloneSize(ctx, namespaceOf(req, dv), &dv.Spec)
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, fmt.Errorf("sizing the clone %s/%s: %w", namespaceOf(req, dv), nameOf(req, dv), err))
	}
	if !ok {
		return admission.Allowed("")
	}
	patch, err := storageSizePatch(req.Object.Raw, size)
	if err != nil {
		return admission.Errored(http.StatusBadRequest, err)
	}
	return admission.Patched(fmt.Sprintf("spec.storage.resources.requests.storage set to %s from the source PersistentVolumeClaim %q", size.String(), source), patch...)
}
