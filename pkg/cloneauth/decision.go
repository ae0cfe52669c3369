package cloneauth

// Decision is the outcome of one clone authorization.
type Decision struct {
	// Allowed is true when the clone may proceed.
	Allowed bool
	// Checked is true when SubjectAccessReviews were asked; a same-namespace
	// clone is allowed without one.
	Checked bool
	// Via names the permission that allowed the clone: ViaDataVolumesSource
	// or ViaPods; empty when not allowed or not checked.
	Via string
	// Reason explains the decision; for a checked one it is the
	// SubjectAccessReview's reason, e.g. the RBAC binding that allowed it.
	Reason string
	// Missing spells out the permission a denied requester lacks.
	Missing string
	// EvaluationError is what the authorizer reported it could not evaluate
	// in a denial; it is for logs, not for the requester.
	EvaluationError string
}

func (d Decision) verdict() string {
	if d.Allowed {
		return DecisionAllow
	}
	return DecisionDeny
}

// auditReason is the SubjectAccessReview's reason or, for a denial that came
// without one (RBAC gives none), the missing permission.
func (d Decision) auditReason() string {
	if d.Reason == "" && !d.Allowed && d.Missing != "" {
		return "missing permission " + d.Missing
	}
	return d.Reason
}

// ShortAuditAnnotations are the facts of the decision under keys without
// the prefix and without "/", as an AdmissionResponse's auditAnnotations
// must be (kube-apiserver prefixes them with the webhook's name).
func (d Decision) ShortAuditAnnotations(req Request) map[string]string {
	annotations := map[string]string{
		"decision": d.verdict(),
		"reason":   d.auditReason(),
		"source":   req.source(),
		"target":   req.target(),
	}
	if sa := serviceAccountOf(req.User); sa != "" {
		annotations["serviceaccount"] = sa
	}
	return annotations
}

// AuditAnnotations are the facts of the decision under the full
// clone.cdi.kubevirt.io/ keys, for the aggregated apiserver's audit log.
func (d Decision) AuditAnnotations(req Request) map[string]string {
	short := d.ShortAuditAnnotations(req)
	annotations := make(map[string]string, len(short))
	for key, value := range short {
		annotations[AnnotationPrefix+key] = value
	}
	return annotations
}
