package apiserver

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/audit"
	"k8s.io/apiserver/pkg/authentication/user"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/kubernetes/scheme"
	authorizationv1client "k8s.io/client-go/kubernetes/typed/authorization/v1"
	"k8s.io/client-go/rest"

	"github.com/datavolume/datavolume/pkg/apis/cdi"
	"github.com/datavolume/datavolume/pkg/cloneauth"
)

// These tests drive cloneGate.onCreate, the create hook of every DataVolume,
// with the real authorizer and a real client-go clientset talking HTTP to a
// server that plays kube-apiserver's SubjectAccessReview endpoint.

const (
	testTimeout = 300 * time.Millisecond
	sarPath     = "/apis/authorization.k8s.io/v1/subjectaccessreviews"
	rbacReason  = `RBAC: allowed by RoleBinding "allow-clone-to-user/src" of ClusterRole "datavolume-cloner" to User "alice"`
	podsReason  = `RBAC: allowed by RoleBinding "pod-runner/src" of Role "pod-runner" to User "alice"`
	forgedGrant = "v1.key-1.e30.AAAA"
)

// sarEndpoint records the reviews it is asked and answers each with answer.
type sarEndpoint struct {
	t      *testing.T
	answer func(w http.ResponseWriter, r *http.Request, review *authorizationv1.SubjectAccessReview)

	mu    sync.Mutex
	asked []authorizationv1.SubjectAccessReviewSpec
}

func (e *sarEndpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != sarPath {
		e.t.Errorf("unexpected request %s %s", r.Method, r.URL.Path)
		http.NotFound(w, r)
		return
	}
	// client-go sends protobuf or JSON, as kube-apiserver accepts both.
	body, err := io.ReadAll(r.Body)
	if err != nil {
		e.t.Errorf("reading SubjectAccessReview: %v", err)
		return
	}
	var review authorizationv1.SubjectAccessReview
	if _, _, err := scheme.Codecs.UniversalDeserializer().Decode(body, nil, &review); err != nil {
		e.t.Errorf("decoding SubjectAccessReview (%s): %v", r.Header.Get("Content-Type"), err)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	e.mu.Lock()
	e.asked = append(e.asked, review.Spec)
	e.mu.Unlock()
	e.answer(w, r, &review)
}

func (e *sarEndpoint) reviews() []authorizationv1.SubjectAccessReviewSpec {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]authorizationv1.SubjectAccessReviewSpec(nil), e.asked...)
}

// answerBy answers allowed with reason for the resources listed, denied for
// the others.
func answerBy(allowed map[string]string) func(http.ResponseWriter, *http.Request, *authorizationv1.SubjectAccessReview) {
	return func(w http.ResponseWriter, _ *http.Request, review *authorizationv1.SubjectAccessReview) {
		reason, ok := allowed[review.Spec.ResourceAttributes.Resource]
		review.APIVersion, review.Kind = "authorization.k8s.io/v1", "SubjectAccessReview"
		review.Status = authorizationv1.SubjectAccessReviewStatus{Allowed: ok, Reason: reason}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(review)
	}
}

// internalError answers as kube-apiserver does when it cannot serve.
func internalError(w http.ResponseWriter, _ *http.Request, _ *authorizationv1.SubjectAccessReview) {
	status := metav1.Status{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Status"},
		Status:   metav1.StatusFailure, Code: http.StatusInternalServerError,
		Reason: metav1.StatusReasonInternalError, Message: "authorizer exploded",
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusInternalServerError)
	_ = json.NewEncoder(w).Encode(status)
}

// hang never answers in time: it holds the request until the client gives up.
func hang(_ http.ResponseWriter, r *http.Request, _ *authorizationv1.SubjectAccessReview) {
	select {
	case <-r.Context().Done():
	case <-time.After(20 * testTimeout):
	}
}

type gateFixture struct {
	gate     *cloneGate
	endpoint *sarEndpoint
	// reviews is the clone checks' client of endpoint.
	reviews authorizationv1client.SubjectAccessReviewInterface
	keys    *cloneauth.KeySet
	now     time.Time
}

func newGate(t *testing.T, answer func(http.ResponseWriter, *http.Request, *authorizationv1.SubjectAccessReview)) *gateFixture {
	t.Helper()
	endpoint := &sarEndpoint{t: t, answer: answer}
	server := httptest.NewServer(endpoint)
	t.Cleanup(server.Close)
	client, err := kubernetes.NewForConfig(&rest.Config{Host: server.URL})
	assert.NilError(t, err)

	keys, err := cloneauth.NewKeySet("key-1", map[string][]byte{"key-1": []byte(strings.Repeat("k", 32))})
	assert.NilError(t, err)
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	gate := &cloneGate{
		authorizer: cloneauth.NewAuthorizer(client.AuthorizationV1().SubjectAccessReviews(), cloneauth.WithTimeout(testTimeout)),
		keys:       keys,
		ttl:        time.Hour,
		now:        func() time.Time { return now },
	}
	return &gateFixture{gate: gate, endpoint: endpoint, reviews: client.AuthorizationV1().SubjectAccessReviews(), keys: keys, now: now}
}

var alice = &user.DefaultInfo{
	Name:   "alice",
	UID:    "alice-uid",
	Groups: []string{"cloners", "system:authenticated"},
	Extra:  map[string][]string{"team": {"storage"}},
}

// requestContext is what the apiserver's filters leave for a create by u:
// the user and an audit context.
func requestContext(u user.Info) context.Context {
	ctx := audit.WithAuditContext(context.Background())
	ctx = genericapirequest.WithNamespace(ctx, "dst")
	if u != nil {
		ctx = genericapirequest.WithUser(ctx, u)
	}
	return ctx
}

// cloneDataVolume clones sourceNamespace/disk into dst/copy and carries a
// grant the client made up.
func cloneDataVolume(sourceNamespace string) *cdi.DataVolume {
	return &cdi.DataVolume{
		ObjectMeta: metav1.ObjectMeta{
			Name: "copy", Namespace: "dst", UID: "copy-uid",
			Annotations: map[string]string{cloneauth.GrantAnnotation: forgedGrant, "team": "storage"},
		},
		Spec: cdi.DataVolumeSpec{Source: &cdi.DataVolumeSource{PVC: &cdi.DataVolumeSourcePVC{Namespace: sourceNamespace, Name: "disk"}}},
	}
}

func auditAnnotations(ctx context.Context) map[string]string {
	return audit.AuditContextFrom(ctx).GetEventAnnotations()
}

func assertDenied(t *testing.T, ctx context.Context, dv *cdi.DataVolume, err error, wantMessage ...string) {
	t.Helper()
	assert.Assert(t, err != nil, "the clone was allowed")
	assert.Assert(t, apierrors.IsForbidden(err), "not a 403: %v", err)
	for _, want := range wantMessage {
		assert.Check(t, is.Contains(err.Error(), want))
	}
	_, stamped := dv.Annotations[cloneauth.GrantAnnotation]
	assert.Check(t, !stamped, "a denied clone carries a grant: %v", dv.Annotations)
	assert.Check(t, is.Equal(dv.Annotations["team"], "storage"), "other annotations are kept")
	got := auditAnnotations(ctx)
	assert.Check(t, is.Equal(got[cloneauth.AuditDecision], cloneauth.DecisionDeny))
	assert.Check(t, is.Equal(got[cloneauth.AuditSource], "src/disk"))
	assert.Check(t, is.Equal(got[cloneauth.AuditTarget], "dst/copy"))
}

func TestCloneCheckFailureDenies(t *testing.T) {
	cases := []struct {
		name        string
		answer      func(http.ResponseWriter, *http.Request, *authorizationv1.SubjectAccessReview)
		wantReviews int
		wantMessage string
	}{
		{
			name:        "authorization endpoint answers 500",
			answer:      internalError,
			wantReviews: 1,
			wantMessage: "authorizer exploded",
		},
		{
			name:        "authorization endpoint never answers",
			answer:      hang,
			wantReviews: 1,
			wantMessage: "no answer within 300ms",
		},
		{
			name: "fallback review answers 500",
			answer: func(w http.ResponseWriter, r *http.Request, review *authorizationv1.SubjectAccessReview) {
				if review.Spec.ResourceAttributes.Resource == "pods" {
					internalError(w, r, review)
					return
				}
				answerBy(nil)(w, r, review)
			},
			wantReviews: 2,
			wantMessage: "authorizer exploded",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newGate(t, tc.answer)
			ctx := requestContext(alice)
			dv := cloneDataVolume("src")

			start := time.Now()
			err := f.gate.onCreate(ctx, dv, &metav1.CreateOptions{})
			took := time.Since(start)

			assertDenied(t, ctx, dv, err,
				`could not check whether user "alice" may clone PersistentVolumeClaim "src/disk" into namespace "dst", so the clone is denied`,
				"SubjectAccessReview failed",
				tc.wantMessage)
			assert.Check(t, is.Equal(auditAnnotations(ctx)[cloneauth.AuditReason], "authorization check failed"))
			assert.Check(t, is.Len(f.endpoint.reviews(), tc.wantReviews))
			// Each review is bounded by the timeout: a hung authorizer holds
			// the create no longer (slack for a loaded machine).
			bound := time.Duration(tc.wantReviews)*testTimeout + 5*time.Second
			assert.Check(t, took < bound, "onCreate took %s", took)
		})
	}
}

func TestCloneAllowedStampsGrantThatVerifies(t *testing.T) {
	cases := []struct {
		name        string
		allowed     map[string]string
		wantReason  string
		wantReviews int
	}{
		{name: "datavolumes/source", allowed: map[string]string{"datavolumes": rbacReason}, wantReason: rbacReason, wantReviews: 1},
		{name: "create pods fallback", allowed: map[string]string{"pods": podsReason}, wantReason: podsReason, wantReviews: 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newGate(t, answerBy(tc.allowed))
			ctx := requestContext(alice)
			dv := cloneDataVolume("src")

			assert.NilError(t, f.gate.onCreate(ctx, dv, &metav1.CreateOptions{}))

			token := dv.Annotations[cloneauth.GrantAnnotation]
			assert.Assert(t, token != "" && token != forgedGrant, "grant %q", token)
			assert.Check(t, is.Equal(dv.Annotations["team"], "storage"))
			target := cloneauth.Target{Namespace: "dst", Name: "copy", UID: "copy-uid", SourceNamespace: "src", SourceName: "disk"}
			grant, err := f.keys.Verify(token, target, f.now.Add(time.Minute))
			assert.NilError(t, err)
			assert.Check(t, is.Equal(grant.Issuer, grantIssuer))
			assert.Check(t, grant.Expires.Equal(f.now.Add(time.Hour)), "expires %s", grant.Expires)
			// The grant is for this DataVolume only.
			_, err = f.keys.Verify(token, cloneauth.Target{Namespace: "dst", Name: "copy", UID: "other-uid", SourceNamespace: "src", SourceName: "disk"}, f.now)
			assert.Check(t, is.ErrorIs(err, cloneauth.ErrGrantWrongTarget))

			assert.DeepEqual(t, auditAnnotations(ctx), map[string]string{
				cloneauth.AuditDecision: cloneauth.DecisionAllow,
				cloneauth.AuditReason:   tc.wantReason,
				cloneauth.AuditSource:   "src/disk",
				cloneauth.AuditTarget:   "dst/copy",
			})

			// The reviews ask for the requester exactly as authenticated.
			reviews := f.endpoint.reviews()
			assert.Assert(t, is.Len(reviews, tc.wantReviews))
			first := reviews[0]
			assert.Check(t, is.Equal(first.User, "alice"))
			assert.Check(t, is.Equal(first.UID, "alice-uid"))
			assert.Check(t, is.DeepEqual(first.Groups, []string{"cloners", "system:authenticated"}))
			assert.Check(t, is.DeepEqual(first.Extra, map[string]authorizationv1.ExtraValue{"team": {"storage"}}))
			assert.Check(t, is.DeepEqual(*first.ResourceAttributes, authorizationv1.ResourceAttributes{
				Namespace: "src", Verb: "create", Group: "cdi.kubevirt.io", Resource: "datavolumes", Subresource: "source", Name: "disk",
			}))
			if tc.wantReviews == 2 {
				assert.Check(t, is.DeepEqual(*reviews[1].ResourceAttributes, authorizationv1.ResourceAttributes{
					Namespace: "src", Verb: "create", Resource: "pods",
				}))
			}
		})
	}
}

func TestCloneDeniedByRBAC(t *testing.T) {
	f := newGate(t, answerBy(nil))
	ctx := requestContext(alice)
	dv := cloneDataVolume("src")

	err := f.gate.onCreate(ctx, dv, &metav1.CreateOptions{})

	assertDenied(t, ctx, dv, err,
		`user "alice" may not clone PersistentVolumeClaim "src/disk" into namespace "dst"`,
		`missing permission create datavolumes/source (cdi.kubevirt.io) on "disk" in namespace "src" (or create pods in "src")`)
	assert.Check(t, is.Equal(auditAnnotations(ctx)[cloneauth.AuditReason],
		`missing permission create cdi.kubevirt.io/datavolumes/source "disk" in namespace "src"`))
	assert.Check(t, is.Len(f.endpoint.reviews(), 2), "both permissions are asked")
}

// A clone within one namespace needs no more than create datavolumes: no
// review is sent, and no grant is made; a grant the client sent is dropped.
func TestSameNamespaceCloneSendsNoReview(t *testing.T) {
	for _, sourceNamespace := range []string{"dst", ""} {
		f := newGate(t, internalError)
		ctx := requestContext(alice)
		dv := cloneDataVolume(sourceNamespace)

		assert.NilError(t, f.gate.onCreate(ctx, dv, &metav1.CreateOptions{}))

		assert.Check(t, is.Len(f.endpoint.reviews(), 0))
		assert.Check(t, is.DeepEqual(dv.Annotations, map[string]string{"team": "storage"}))
		assert.Check(t, is.Len(auditAnnotations(ctx), 0))
	}
}

// Whatever the source, a grant the client sent never survives create.
func TestClientGrantIsDropped(t *testing.T) {
	f := newGate(t, internalError)
	dv := &cdi.DataVolume{
		ObjectMeta: metav1.ObjectMeta{Name: "blank", Namespace: "dst", UID: "blank-uid",
			Annotations: map[string]string{cloneauth.GrantAnnotation: forgedGrant}},
		Spec: cdi.DataVolumeSpec{Source: &cdi.DataVolumeSource{Blank: &cdi.DataVolumeBlankImage{}}},
	}
	assert.NilError(t, f.gate.onCreate(requestContext(alice), dv, &metav1.CreateOptions{}))
	_, kept := dv.Annotations[cloneauth.GrantAnnotation]
	assert.Check(t, !kept)
	assert.Check(t, is.Len(f.endpoint.reviews(), 0))
}

func TestCloneWithoutUserIsForbidden(t *testing.T) {
	f := newGate(t, answerBy(map[string]string{"datavolumes": rbacReason}))
	dv := cloneDataVolume("src")
	err := f.gate.onCreate(requestContext(nil), dv, &metav1.CreateOptions{})
	assert.Assert(t, apierrors.IsForbidden(err), "%v", err)
	assert.Check(t, is.Contains(err.Error(), "no authenticated user"))
	_, stamped := dv.Annotations[cloneauth.GrantAnnotation]
	assert.Check(t, !stamped)
	assert.Check(t, is.Len(f.endpoint.reviews(), 0))
}

// reviewsOf counts the reviews endpoint was asked for user.
func (e *sarEndpoint) reviewsOf(user string) int {
	n := 0
	for _, spec := range e.reviews() {
		if spec.User == user {
			n++
		}
	}
	return n
}

// Issue 18: one user's clone checks at their bound. That user's next
// create is refused with 429 and Retry-After, audited as denied, without a
// grant and without a review; another user's create is checked and granted
// meanwhile.
func TestCloneChecksPastTheRequesterBoundAreTooManyRequests(t *testing.T) {
	release := make(chan struct{})
	allowed := answerBy(map[string]string{"datavolumes": rbacReason})
	f := newGate(t, func(w http.ResponseWriter, r *http.Request, review *authorizationv1.SubjectAccessReview) {
		if review.Spec.User == alice.Name {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}
		allowed(w, r, review)
	})
	o := NewOptions()
	o.CloneCheckMaxInFlightPerUser = 2
	f.gate.authorizer = o.cloneAuthorizer(f.reviews, logr.Discard())

	held := make(chan error, 2)
	for i := range 2 {
		go func() {
			dv := cloneDataVolume("src")
			dv.Name = fmt.Sprintf("held-%d", i)
			dv.Spec.Source.PVC.Name = fmt.Sprintf("disk-%d", i)
			held <- f.gate.onCreate(requestContext(alice), dv, &metav1.CreateOptions{})
		}()
	}
	deadline := time.Now().Add(5 * time.Second)
	for f.endpoint.reviewsOf(alice.Name) < 2 {
		assert.Assert(t, time.Now().Before(deadline), "alice's two checks are not asking")
		time.Sleep(time.Millisecond)
	}

	ctx := requestContext(alice)
	dv := cloneDataVolume("src")
	err := f.gate.onCreate(ctx, dv, &metav1.CreateOptions{})
	assert.Assert(t, apierrors.IsTooManyRequests(err), "not a 429: %v", err)
	seconds, ok := apierrors.SuggestsClientDelay(err)
	assert.Check(t, ok && seconds == cloneauth.RetryAfterSeconds, "Retry-After %d, %v", seconds, ok)
	assert.Check(t, is.Contains(err.Error(), `user "alice" has 2 in flight already, the most allowed per requester`))
	assert.Check(t, !strings.Contains(err.Error(), "disk"), "the refusal tells of the source: %v", err)
	_, stamped := dv.Annotations[cloneauth.GrantAnnotation]
	assert.Check(t, !stamped, "a refused clone carries a grant")
	assert.Check(t, is.Equal(auditAnnotations(ctx)[cloneauth.AuditDecision], cloneauth.DecisionDeny))
	assert.Check(t, is.Equal(f.endpoint.reviewsOf(alice.Name), 2), "the refused check asked a review")

	bob := &user.DefaultInfo{Name: "bob", Groups: []string{"system:authenticated"}}
	dv = cloneDataVolume("src")
	assert.NilError(t, f.gate.onCreate(requestContext(bob), dv, &metav1.CreateOptions{}), "bob waited for alice's checks")
	assert.Check(t, dv.Annotations[cloneauth.GrantAnnotation] != "")

	close(release)
	for range 2 {
		assert.NilError(t, <-held)
	}
}

// datavolumes/source answers 429 too rather than "not allowed": the check
// was not made.
func TestCloneSourcePastTheRequesterBoundIsTooManyRequests(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	f := newGate(t, func(w http.ResponseWriter, r *http.Request, review *authorizationv1.SubjectAccessReview) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
		answerBy(nil)(w, r, review)
	})
	o := NewOptions()
	o.CloneCheckMaxInFlightPerUser = 1
	authorizer := o.cloneAuthorizer(f.reviews, logr.Discard())
	go func() {
		_, _ = authorizer.Authorize(context.Background(), cloneauth.Request{User: alice, SourceNamespace: "src", SourceName: "other", TargetNamespace: "dst"})
	}()
	deadline := time.Now().Add(5 * time.Second)
	for f.endpoint.reviewsOf(alice.Name) < 1 {
		assert.Assert(t, time.Now().Before(deadline), "alice's check is not asking")
		time.Sleep(time.Millisecond)
	}
	kube := fake.NewClientset(&corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: "disk", Namespace: "src"}})
	describer := &sourceDescriber{kube: kube, authorizer: authorizer}

	_, err := describer.DescribeSource(requestContext(alice), "src", "disk")

	assert.Assert(t, apierrors.IsTooManyRequests(err), "not a 429: %v", err)
}
