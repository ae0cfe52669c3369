package cloneauth

import (
	"errors"
	"net/http"
	"testing"

	"gotest.tools/v3/assert"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestDenialError(t *testing.T) {
	for _, tc := range []struct {
		name        string
		req         Request
		decision    Decision
		err         error
		wantMessage string // empty: no error
	}{
		{
			name:     "allowed is no error",
			req:      crossNamespace(alice),
			decision: Decision{Allowed: true, Checked: true, Via: ViaPods},
		},
		{
			name:     "denied names user, source and missing permission",
			req:      crossNamespace(alice),
			decision: Decision{Checked: true, Missing: `create cdi.kubevirt.io/datavolumes/source "disk" in namespace "src"`},
			wantMessage: `datavolumes.cdi.kubevirt.io "dv" is forbidden: ` +
				`user "alice" may not clone PersistentVolumeClaim "src/disk" into namespace "dst": ` +
				`missing permission create datavolumes/source (cdi.kubevirt.io) on "disk" in namespace "src" (or create pods in "src"); ` +
				`ask an administrator for a RoleBinding in "src" to a ClusterRole granting datavolumes/source`,
		},
		{
			name:     "denied service account, with the authorizer's reason",
			req:      crossNamespace(ServiceAccountUser("dst", "default")),
			decision: Decision{Checked: true, Reason: "denied by policy"},
			wantMessage: `datavolumes.cdi.kubevirt.io "dv" is forbidden: ` +
				`user "system:serviceaccount:dst:default" may not clone PersistentVolumeClaim "src/disk" into namespace "dst": ` +
				`missing permission create datavolumes/source (cdi.kubevirt.io) on "disk" in namespace "src" (or create pods in "src"); ` +
				`ask an administrator for a RoleBinding in "src" to a ClusterRole granting datavolumes/source (authorizer: denied by policy)`,
		},
		{
			name:     "check failed denies even if the decision says allowed",
			req:      crossNamespace(alice),
			decision: Decision{Allowed: true},
			err:      errors.New("SubjectAccessReview failed: timeout"),
			wantMessage: `datavolumes.cdi.kubevirt.io "dv" is forbidden: ` +
				`could not check whether user "alice" may clone PersistentVolumeClaim "src/disk" into namespace "dst", ` +
				`so the clone is denied: SubjectAccessReview failed: timeout`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := DenialError(tc.req, tc.decision, tc.err)

			if tc.wantMessage == "" {
				assert.NilError(t, err)
				return
			}
			assert.Assert(t, apierrors.IsForbidden(err), "not forbidden: %v", err)
			var status apierrors.APIStatus
			assert.Assert(t, errors.As(err, &status))
			assert.Equal(t, status.Status().Code, int32(http.StatusForbidden))
			assert.DeepEqual(t, status.Status().Details, &metav1.StatusDetails{
				Group: "cdi.kubevirt.io", Kind: "datavolumes", Name: "dv",
			})
			assert.Equal(t, err.Error(), tc.wantMessage)
		})
	}
}
