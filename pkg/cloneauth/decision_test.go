package cloneauth

import (
	"testing"

	"gotest.tools/v3/assert"
)

func TestAuditAnnotations(t *testing.T) {
	for _, tc := range []struct {
		name      string
		req       Request
		decision  Decision
		wantShort map[string]string
	}{
		{
			name:     "allowed by RBAC",
			req:      crossNamespace(alice),
			decision: Decision{Allowed: true, Checked: true, Via: ViaDataVolumesSource, Reason: rbacAllowed},
			wantShort: map[string]string{
				"decision": "allow", "reason": rbacAllowed, "source": "src/disk", "target": "dst/dv",
			},
		},
		{
			name:     "denied service account",
			req:      crossNamespace(ServiceAccountUser("dst", "default")),
			decision: Decision{Checked: true, Missing: `create cdi.kubevirt.io/datavolumes/source "disk" in namespace "src"`},
			wantShort: map[string]string{
				"decision":       "deny",
				"reason":         `missing permission create cdi.kubevirt.io/datavolumes/source "disk" in namespace "src"`,
				"source":         "src/disk",
				"target":         "dst/dv",
				"serviceaccount": "dst/default",
			},
		},
		{
			name:     "denial keeps the authorizer's reason",
			req:      crossNamespace(alice),
			decision: Decision{Checked: true, Reason: "no RBAC policy matched", Missing: "create pods"},
			wantShort: map[string]string{
				"decision": "deny", "reason": "no RBAC policy matched", "source": "src/disk", "target": "dst/dv",
			},
		},
		{
			name:     "same namespace",
			req:      Request{User: alice, SourceNamespace: "dst", SourceName: "disk", TargetNamespace: "dst", TargetName: "dv"},
			decision: Decision{Allowed: true, Reason: sameNamespaceReason},
			wantShort: map[string]string{
				"decision": "allow", "reason": sameNamespaceReason, "source": "dst/disk", "target": "dst/dv",
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.DeepEqual(t, tc.decision.ShortAuditAnnotations(tc.req), tc.wantShort)

			wantFull := map[string]string{}
			for key, value := range tc.wantShort {
				wantFull["clone.cdi.kubevirt.io/"+key] = value
			}
			assert.DeepEqual(t, tc.decision.AuditAnnotations(tc.req), wantFull)
		})
	}
}

func TestAuditAnnotationKeysMatchConstants(t *testing.T) {
	got := Decision{}.AuditAnnotations(crossNamespace(ServiceAccountUser("dst", "default")))

	for _, key := range []string{AuditDecision, AuditReason, AuditSource, AuditTarget, AuditServiceAccount} {
		_, ok := got[key]
		assert.Assert(t, ok, "missing %s in %v", key, got)
	}
}
