package cloneauth

import (
	"k8s.io/apiserver/pkg/authentication/user"
)

// Audit annotation keys of a clone decision, as the aggregated apiserver
// records them. The webhook uses the same names without the prefix (a key of
// an AdmissionResponse may not contain "/").
const (
	AnnotationPrefix    = "clone.cdi.kubevirt.io/"
	AuditDecision       = AnnotationPrefix + "decision"
	AuditReason         = AnnotationPrefix + "reason"
	AuditSource         = AnnotationPrefix + "source"
	AuditTarget         = AnnotationPrefix + "target"
	AuditServiceAccount = AnnotationPrefix + "serviceaccount"
)

// Values of the decision annotation.
const (
	DecisionAllow = "allow"
	DecisionDeny  = "deny"
)

// GrantAnnotation holds the signed grant on an allowed cross-namespace
// DataVolume; the controller verifies it before moving any data.
const GrantAnnotation = AnnotationPrefix + "grant"

// The resource a cross-namespace clone is authorized against.
const (
	DataVolumesGroup    = "cdi.kubevirt.io"
	DataVolumesResource = "datavolumes"
	SourceSubresource   = "source"
)

// Values of Decision.Via: which permission allowed the clone.
const (
	ViaDataVolumesSource = DataVolumesResource + "/" + SourceSubresource
	ViaPods              = "pods"
)

// Request is one clone to decide: who asks, and from where to where. Both
// namespaces are explicit: a spec's source namespace is defaulted where
// specs are read (pkg/plan), not here. A request without a source namespace
// is invalid, and so denied.
type Request struct {
	// User is the requester, with groups, extra and UID as authenticated.
	User user.Info
	// SourceNamespace and SourceName name the source PersistentVolumeClaim.
	SourceNamespace, SourceName string
	// TargetNamespace and TargetName name the DataVolume being created.
	TargetNamespace, TargetName string
}

// CrossNamespace reports whether the clone leaves its namespace and so needs
// a permission in the source namespace.
func (r Request) CrossNamespace() bool {
	return r.SourceNamespace != r.TargetNamespace
}

func (r Request) source() string { return r.SourceNamespace + "/" + r.SourceName }

func (r Request) target() string { return r.TargetNamespace + "/" + r.TargetName }

func (r Request) userName() string {
	if r.User == nil {
		return ""
	}
	return r.User.GetName()
}
