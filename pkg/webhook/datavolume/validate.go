package datavolume

import (
	"context"
	"fmt"
	"net/http"

	admissionv1 "k8s.io/api/admission/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/datavolume/datavolume/pkg/apis/cdi"
	"github.com/datavolume/datavolume/pkg/webhook/admission"
)

// ValidatingHandler admits DataVolumes that pass the Rules.
type ValidatingHandler struct {
	Rules   *Rules
	Decoder *Decoder
}

var _ admission.Handler = (*ValidatingHandler)(nil)

// Handle checks a created DataVolume, and an updated one whose spec changed.
func (h *ValidatingHandler) Handle(ctx context.Context, req admission.Request) admission.Response {
	if err := checkResource(req); err != nil {
		return admission.Errored(http.StatusBadRequest, err)
	}
	if req.SubResource != "" || (req.Operation != admissionv1.Create && req.Operation != admissionv1.Update) {
		return admission.Allowed("")
	}
	dv, err := h.Decoder.DataVolume(req.Object.Raw, req.Kind)
	if err != nil {
		return admission.Errored(http.StatusBadRequest, err)
	}
	if req.Operation == admissionv1.Update {
		old, err := h.Decoder.DataVolume(req.OldObject.Raw, req.Kind)
		if err != nil {
			return admission.Errored(http.StatusBadRequest, fmt.Errorf("old object: %w", err))
		}
		// The spec was admitted when created and cannot change (the registry
		// refuses it); metadata updates must not fail because a source has
		// since been resized or put to use.
		if apiequality.Semantic.DeepEqual(dv.Spec, old.Spec) {
			return admission.Allowed("spec unchanged")
		}
	}

	verdict, err := h.Rules.Check(ctx, namespaceOf(req, dv), &dv.Spec, field.NewPath("spec"))
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, fmt.Errorf("checking DataVolume %s/%s: %w", namespaceOf(req, dv), nameOf(req, dv), err))
	}
	if len(verdict.Errors) > 0 {
		return admission.Invalid(cdi.Kind("DataVolume"), nameOf(req, dv), verdict.Errors).WithWarnings(verdict.Warnings...)
	}
	return admission.Allowed("").WithWarnings(verdict.Warnings...)
}
