package virtualmachine

import "fmt"

// auditAnnotations are the clone decisions as AdmissionResponse audit
// annotations (decision, serviceaccount, source, target, reason; keys
// without "/", kube-apiserver prefixes the webhook's name). A VM that clones
// once gets these keys as they are; one that clones several times gets them
// suffixed with the template's index ("decision.0", "decision.2"), so no
// decision hides another.
func auditAnnotations(clones []CloneDecision) map[string]string {
	switch len(clones) {
	case 0:
		return nil
	case 1:
		return clones[0].Decision.ShortAuditAnnotations(clones[0].Request)
	}
	annotations := map[string]string{}
	for _, clone := range clones {
		for key, value := range clone.Decision.ShortAuditAnnotations(clone.Request) {
			annotations[fmt.Sprintf("%s.%d", key, clone.Template)] = value
		}
	}
	return annotations
}
