package virtualmachine

import (
	"context"
	"fmt"
	"net/http"

	admissionv1 "k8s.io/api/admission/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/datavolume/datavolume/pkg/cloneauth"
	"github.com/datavolume/datavolume/pkg/webhook/admission"
)

// Group and resource of KubeVirt VirtualMachines.
var virtualMachines = schema.GroupResource{Group: "kubevirt.io", Resource: "virtualmachines"}

// Handler admits VirtualMachines with the Admitter.
type Handler struct {
	Admitter *Admitter
}

var _ admission.Handler = (*Handler)(nil)

// Handle checks a created or updated VirtualMachine.
func (h *Handler) Handle(ctx context.Context, req admission.Request) admission.Response {
	if req.Resource.Group != virtualMachines.Group || req.Resource.Resource != virtualMachines.Resource {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("this endpoint admits %s, not %s.%s", virtualMachines, req.Resource.Resource, req.Resource.Group))
	}
	if req.SubResource != "" || (req.Operation != admissionv1.Create && req.Operation != admissionv1.Update) {
		return admission.Allowed("")
	}
	vm, err := decodeVirtualMachine(req.Object.Raw)
	if err != nil {
		return admission.Errored(http.StatusBadRequest, err)
	}
	var old *virtualMachine
	if req.Operation == admissionv1.Update {
		if old, err = decodeVirtualMachine(req.OldObject.Raw); err != nil {
			return admission.Errored(http.StatusBadRequest, fmt.Errorf("old object: %w", err))
		}
	}
	namespace := req.Namespace
	if namespace == "" {
		namespace = vm.Metadata.Namespace
	}

	verdict, err := h.Admitter.Admit(ctx, namespace, vm, old)
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, fmt.Errorf("admitting VirtualMachine %s/%s: %w", namespace, vm.Name(), err))
	}
	annotations := auditAnnotations(verdict.Clones)
	switch {
	case verdict.TooManyChecks != nil:
		// Refused for load, not for a permission: 429 with Retry-After,
		// which kube-apiserver hands the client to retry.
		return admission.Rejected(cloneauth.TooManyChecks(verdict.TooManyChecks).ErrStatus).WithAuditAnnotations(annotations)
	case len(verdict.Errors) == 0:
		return admission.Allowed("").WithWarnings(verdict.Warnings...).WithAuditAnnotations(annotations)
	case len(verdict.Errors) == verdict.CloneDenials:
		// Nothing wrong with the VM but a permission: 403, as for a DataVolume.
		forbidden := apierrors.NewForbidden(virtualMachines, vm.Name(), verdict.Errors.ToAggregate())
		return admission.Rejected(forbidden.ErrStatus).WithWarnings(verdict.Warnings...).WithAuditAnnotations(annotations)
	default:
		return admission.Invalid(schema.GroupKind{Group: virtualMachines.Group, Kind: "VirtualMachine"}, vm.Name(), verdict.Errors).
			WithWarnings(verdict.Warnings...).WithAuditAnnotations(annotations)
	}
}
