package cloneauth

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	"github.com/google/go-cmp/cmp"
	"gotest.tools/v3/assert"
	authorizationv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apiserver/pkg/authentication/user"
)

var alice = &user.DefaultInfo{
	Name:   "alice",
	UID:    "alice-uid",
	Groups: []string{"developers", user.AllAuthenticated},
	Extra:  map[string][]string{"scopes.example.com": {"a", "b"}},
}

func crossNamespace(u user.Info) Request {
	return Request{User: u, SourceNamespace: "src", SourceName: "disk", TargetNamespace: "dst", TargetName: "dv"}
}

// reviewOf is the review Authorize must send for alice and attributes.
func reviewOfAlice(attributes authorizationv1.ResourceAttributes) authorizationv1.SubjectAccessReviewSpec {
	return authorizationv1.SubjectAccessReviewSpec{
		ResourceAttributes: &attributes,
		User:               "alice",
		UID:                "alice-uid",
		Groups:             []string{"developers", user.AllAuthenticated},
		Extra:              map[string]authorizationv1.ExtraValue{"scopes.example.com": {"a", "b"}},
	}
}

var (
	dataVolumesSourceOfDisk = authorizationv1.ResourceAttributes{
		Namespace: "src", Verb: "create", Group: "cdi.kubevirt.io", Resource: "datavolumes", Subresource: "source", Name: "disk",
	}
	podsInSrc = authorizationv1.ResourceAttributes{Namespace: "src", Verb: "create", Resource: "pods"}
)

const rbacAllowed = `RBAC: allowed by RoleBinding "clone/src" of ClusterRole "datavolume-cloner" to User "alice"`

func TestAuthorize(t *testing.T) {
	for _, tc := range []struct {
		name      string
		req       Request
		answers   map[string]reviewAnswer
		want      Decision
		wantAsked []authorizationv1.SubjectAccessReviewSpec
		wantErr   error
	}{
		{
			name: "same namespace is allowed without a review",
			req:  Request{User: alice, SourceNamespace: "dst", SourceName: "disk", TargetNamespace: "dst", TargetName: "dv"},
			want: Decision{Allowed: true, Reason: sameNamespaceReason},
		},
		{
			// Callers default the namespace (pkg/plan); one that forgot
			// must not be waved through as same-namespace.
			name:    "no source namespace is refused unchecked",
			req:     Request{User: alice, SourceName: "disk", TargetNamespace: "dst", TargetName: "dv"},
			want:    Decision{Reason: "invalid request"},
			wantErr: ErrInvalidRequest,
		},
		{
			name: "allowed by datavolumes/source asks nothing more",
			req:  crossNamespace(alice),
			answers: map[string]reviewAnswer{
				"datavolumes": {status: authorizationv1.SubjectAccessReviewStatus{Allowed: true, Reason: rbacAllowed}},
			},
			want:      Decision{Allowed: true, Checked: true, Via: "datavolumes/source", Reason: rbacAllowed},
			wantAsked: []authorizationv1.SubjectAccessReviewSpec{reviewOfAlice(dataVolumesSourceOfDisk)},
		},
		{
			name: "denied datavolumes/source falls back to create pods",
			req:  crossNamespace(alice),
			answers: map[string]reviewAnswer{
				"pods": {status: authorizationv1.SubjectAccessReviewStatus{Allowed: true, Reason: "RBAC: allowed by RoleBinding \"edit/src\""}},
			},
			want:      Decision{Allowed: true, Checked: true, Via: "pods", Reason: "RBAC: allowed by RoleBinding \"edit/src\""},
			wantAsked: []authorizationv1.SubjectAccessReviewSpec{reviewOfAlice(dataVolumesSourceOfDisk), reviewOfAlice(podsInSrc)},
		},
		{
			name: "both denied names the missing permission",
			req:  crossNamespace(alice),
			answers: map[string]reviewAnswer{
				"datavolumes": {status: authorizationv1.SubjectAccessReviewStatus{Reason: "no RBAC policy matched"}},
			},
			want: Decision{
				Checked: true,
				Reason:  "no RBAC policy matched",
				Missing: `create cdi.kubevirt.io/datavolumes/source "disk" in namespace "src"`,
			},
			wantAsked: []authorizationv1.SubjectAccessReviewSpec{reviewOfAlice(dataVolumesSourceOfDisk), reviewOfAlice(podsInSrc)},
		},
		{
			name: "evaluation error without allowed denies",
			req:  crossNamespace(alice),
			answers: map[string]reviewAnswer{
				"datavolumes": {status: authorizationv1.SubjectAccessReviewStatus{EvaluationError: "role \"gone\" not found"}},
				"pods":        {status: authorizationv1.SubjectAccessReviewStatus{EvaluationError: "role \"gone\" not found"}},
			},
			want: Decision{
				Checked:         true,
				Missing:         `create cdi.kubevirt.io/datavolumes/source "disk" in namespace "src"`,
				EvaluationError: "role \"gone\" not found",
			},
			wantAsked: []authorizationv1.SubjectAccessReviewSpec{reviewOfAlice(dataVolumesSourceOfDisk), reviewOfAlice(podsInSrc)},
		},
		{
			name: "review error denies with an error",
			req:  crossNamespace(alice),
			answers: map[string]reviewAnswer{
				"datavolumes": {err: apierrors.NewServiceUnavailable("etcd is down")},
			},
			want: Decision{
				Checked: true,
				Reason:  "authorization check failed",
				Missing: `create cdi.kubevirt.io/datavolumes/source "disk" in namespace "src"`,
			},
			wantAsked: []authorizationv1.SubjectAccessReviewSpec{reviewOfAlice(dataVolumesSourceOfDisk)},
			wantErr:   ErrCheckFailed,
		},
		{
			name: "fallback review error denies with an error",
			req:  crossNamespace(alice),
			answers: map[string]reviewAnswer{
				"pods": {err: errors.New("connection refused")},
			},
			want: Decision{
				Checked: true,
				Reason:  "authorization check failed",
				Missing: `create cdi.kubevirt.io/datavolumes/source "disk" in namespace "src"`,
			},
			wantAsked: []authorizationv1.SubjectAccessReviewSpec{reviewOfAlice(dataVolumesSourceOfDisk), reviewOfAlice(podsInSrc)},
			wantErr:   ErrCheckFailed,
		},
		{
			name:    "cross namespace without a user is refused unchecked",
			req:     crossNamespace(nil),
			want:    Decision{Reason: "invalid request"},
			wantErr: ErrInvalidRequest,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reviews := &fakeReviews{answers: tc.answers}
			authorizer := newAuthorizerWith(t, reviews)

			got, err := authorizer.Authorize(context.Background(), tc.req)

			if tc.wantErr != nil {
				assert.ErrorIs(t, err, tc.wantErr)
			} else {
				assert.NilError(t, err)
			}
			assert.DeepEqual(t, got, tc.want)
			assert.DeepEqual(t, reviews.reviewsAsked(), tc.wantAsked)
		})
	}
}

func TestAuthorizeTimeoutDenies(t *testing.T) {
	block := make(chan struct{})
	defer close(block)
	reviews := &fakeReviews{
		block:   block,
		answers: map[string]reviewAnswer{"datavolumes": {status: authorizationv1.SubjectAccessReviewStatus{Allowed: true}}},
	}
	authorizer := newAuthorizerWith(t, reviews, WithTimeout(20*time.Millisecond))

	start := time.Now()
	got, err := authorizer.Authorize(context.Background(), crossNamespace(alice))

	assert.ErrorIs(t, err, ErrCheckFailed)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Assert(t, !got.Allowed)
	assert.Assert(t, time.Since(start) < 5*time.Second, "Authorize waited %s", time.Since(start))
}

func TestAuthorizeCanceledContextDenies(t *testing.T) {
	reviews := &fakeReviews{
		answers: map[string]reviewAnswer{"datavolumes": {status: authorizationv1.SubjectAccessReviewStatus{Allowed: true}}},
		block:   make(chan struct{}),
	}
	defer close(reviews.block)
	authorizer := newAuthorizerWith(t, reviews)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()

	got, err := authorizer.Authorize(ctx, crossNamespace(alice))

	assert.ErrorIs(t, err, context.Canceled)
	assert.Assert(t, !got.Allowed)
}

func TestAuthorizeWithoutClientDenies(t *testing.T) {
	got, err := NewAuthorizer(nil).Authorize(context.Background(), crossNamespace(alice))

	assert.ErrorIs(t, err, ErrCheckFailed)
	assert.Assert(t, !got.Allowed)
}

func TestAuthorizeLogsOneLinePerDecision(t *testing.T) {
	for _, tc := range []struct {
		name    string
		answers map[string]reviewAnswer
		want    map[string]any
	}{
		{
			name:    "allowed",
			answers: map[string]reviewAnswer{"datavolumes": {status: authorizationv1.SubjectAccessReviewStatus{Allowed: true, Reason: rbacAllowed}}},
			want: map[string]any{
				"level": 2.0, "msg": "Clone authorization decided",
				"decision": "allow", "user": "alice", "source": "src/disk", "target": "dst/dv",
				"via": "datavolumes/source", "reason": rbacAllowed,
			},
		},
		{
			name: "denied",
			want: map[string]any{
				"level": 0.0, "msg": "Clone authorization decided",
				"decision": "deny", "user": "alice", "source": "src/disk", "target": "dst/dv",
				"via": "", "reason": "", "missing": `create cdi.kubevirt.io/datavolumes/source "disk" in namespace "src"`,
			},
		},
		{
			name:    "check failed",
			answers: map[string]reviewAnswer{"datavolumes": {err: errors.New("connection refused")}},
			want: map[string]any{
				"msg":      "Clone denied: authorization check failed",
				"error":    `SubjectAccessReview failed for create cdi.kubevirt.io/datavolumes/source "disk" in namespace "src": connection refused`,
				"decision": "deny", "user": "alice", "source": "src/disk", "target": "dst/dv",
				"via": "", "reason": "authorization check failed", "missing": `create cdi.kubevirt.io/datavolumes/source "disk" in namespace "src"`,
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var lines []string
			log := funcr.NewJSON(func(obj string) { lines = append(lines, obj) }, funcr.Options{Verbosity: 2})
			authorizer := newAuthorizerWith(t, &fakeReviews{answers: tc.answers}, WithLogger(log))

			_, _ = authorizer.Authorize(context.Background(), crossNamespace(alice))

			assert.Equal(t, len(lines), 1, "log lines: %q", lines)
			var got map[string]any
			assert.NilError(t, json.Unmarshal([]byte(lines[0]), &got))
			delete(got, "logger") // funcr's, not ours
			assert.DeepEqual(t, got, tc.want)
		})
	}
}

// Allowed clones are in the audit log; at the default verbosity only
// denials fill the server's.
func TestAuthorizeLogsAllowedOnlyAtVerbosity2(t *testing.T) {
	var lines []string
	log := funcr.NewJSON(func(obj string) { lines = append(lines, obj) }, funcr.Options{})
	answers := map[string]reviewAnswer{"datavolumes": {status: authorizationv1.SubjectAccessReviewStatus{Allowed: true, Reason: rbacAllowed}}}
	authorizer := newAuthorizerWith(t, &fakeReviews{answers: answers}, WithLogger(log))

	got, err := authorizer.Authorize(context.Background(), crossNamespace(alice))

	assert.NilError(t, err)
	assert.Assert(t, got.Allowed)
	assert.Equal(t, len(lines), 0, "log lines: %q", lines)
}

func TestAuthorizeErrorSaysWhatFailed(t *testing.T) {
	authorizer := newAuthorizerWith(t, &fakeReviews{answers: map[string]reviewAnswer{"datavolumes": {err: errors.New("connection refused")}}})

	_, err := authorizer.Authorize(context.Background(), crossNamespace(alice))

	want := `SubjectAccessReview failed for create cdi.kubevirt.io/datavolumes/source "disk" in namespace "src": connection refused`
	if diff := cmp.Diff(want, err.Error()); diff != "" {
		t.Errorf("error (-want +got):\n%s", diff)
	}
}
