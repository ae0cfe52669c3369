package cloneauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
	authorizationv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/authentication/user"
	authorizationv1client "k8s.io/client-go/kubernetes/typed/authorization/v1"
	"k8s.io/component-base/metrics/testutil"
)

var bob = &user.DefaultInfo{Name: "bob", Groups: []string{user.AllAuthenticated}}

// allowEveryone answers every datavolumes/source review allowed.
func allowEveryone() map[string]reviewAnswer {
	return map[string]reviewAnswer{"datavolumes": {status: authorizationv1.SubjectAccessReviewStatus{Allowed: true, Reason: rbacAllowed}}}
}

// holdChecks starts n checks of u whose reviews the fake holds, and waits
// until all n are asking; it returns the channel their answers come on.
func holdChecks(t *testing.T, authorizer *Authorizer, reviews *fakeReviews, u user.Info, n int) <-chan error {
	t.Helper()
	done := make(chan error, n)
	for i := range n {
		go func() {
			req := crossNamespace(u)
			req.SourceName = fmt.Sprintf("disk-%d", i)
			_, err := authorizer.Authorize(context.Background(), req)
			done <- err
		}()
	}
	waitUntil(t, func() bool { return reviews.reviewsOf(u.GetName()) == n })
	return done
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(time.Millisecond)
	}
}

func throttledSoFar(t *testing.T) float64 {
	t.Helper()
	n, err := testutil.GetCounterMetricValue(throttledChecks)
	assert.NilError(t, err)
	return n
}

// One requester's flood fills its own slots only: its next check is
// refused after the wait, unasked, while another requester's check goes
// through at once.
func TestOneRequesterAtItsBoundDoesNotHoldUpAnother(t *testing.T) {
	reviews := &fakeReviews{answers: allowEveryone(), block: make(chan struct{}), blockUser: "alice"}
	authorizer := newAuthorizerWith(t, reviews, WithMaxInFlightPerRequester(2, 20*time.Millisecond))
	held := holdChecks(t, authorizer, reviews, alice, 2)
	throttledBefore := throttledSoFar(t)

	d, err := authorizer.Authorize(context.Background(), crossNamespace(alice))
	assert.Check(t, is.ErrorIs(err, ErrTooManyChecks))
	assert.Check(t, !errors.Is(err, ErrCheckFailed), "a refusal for load is not a failed check")
	assert.Check(t, is.DeepEqual(d, Decision{Reason: throttledReason}))
	assert.Check(t, is.Equal(reviews.reviewsOf("alice"), 2), "the refused check asked nothing")
	assert.Check(t, is.Equal(throttledSoFar(t)-throttledBefore, 1.0))

	d, err = authorizer.Authorize(context.Background(), crossNamespace(bob))
	assert.NilError(t, err)
	assert.Check(t, d.Allowed, "bob's check waited for alice's")

	close(reviews.block)
	for range 2 {
		assert.NilError(t, <-held)
	}
	assert.Check(t, is.Equal(authorizer.limit.tracked(), 0), "requesters with nothing in flight are forgotten")
}

// A check that finds its requester's slots taken waits for one to free.
func TestAFreedSlotAdmitsAWaitingCheck(t *testing.T) {
	reviews := &fakeReviews{answers: allowEveryone(), block: make(chan struct{}), blockUser: "alice"}
	authorizer := newAuthorizerWith(t, reviews, WithMaxInFlightPerRequester(1, time.Minute))
	held := holdChecks(t, authorizer, reviews, alice, 1)

	waiting := make(chan error, 1)
	go func() {
		_, err := authorizer.Authorize(context.Background(), crossNamespace(alice))
		waiting <- err
	}()
	waitUntil(t, func() bool {
		authorizer.limit.mu.Lock()
		defer authorizer.limit.mu.Unlock()
		return authorizer.limit.requesters["alice"].users == 2
	})
	assert.Check(t, is.Equal(reviews.reviewsOf("alice"), 1), "the second check asked before a slot freed")

	close(reviews.block)
	assert.NilError(t, <-held)
	assert.NilError(t, <-waiting)
	assert.Check(t, is.Equal(reviews.reviewsOf("alice"), 2))
	assert.Check(t, is.Equal(authorizer.limit.tracked(), 0))
}

// A request that ends while waiting fails its check (the client is gone),
// and is not counted as refused for load.
func TestAWaitEndedByTheRequestFailsTheCheck(t *testing.T) {
	reviews := &fakeReviews{answers: allowEveryone(), block: make(chan struct{}), blockUser: "alice"}
	defer close(reviews.block)
	authorizer := newAuthorizerWith(t, reviews, WithMaxInFlightPerRequester(1, time.Minute))
	holdChecks(t, authorizer, reviews, alice, 1)
	throttledBefore := throttledSoFar(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()

	d, err := authorizer.Authorize(ctx, crossNamespace(alice))

	assert.Check(t, is.ErrorIs(err, ErrCheckFailed))
	assert.Check(t, is.ErrorIs(err, context.DeadlineExceeded))
	assert.Check(t, !errors.Is(err, ErrTooManyChecks))
	assert.Check(t, !d.Allowed)
	assert.Check(t, is.Equal(throttledSoFar(t), throttledBefore))
	assert.Check(t, is.Equal(authorizer.limit.tracked(), 1), "only the held check is left")
}

// What needs no review is not bounded: a same-namespace clone, and an
// invalid request (refused as it is).
func TestUncheckedClonesAreNotBounded(t *testing.T) {
	reviews := &fakeReviews{answers: allowEveryone(), block: make(chan struct{}), blockUser: "alice"}
	defer close(reviews.block)
	authorizer := newAuthorizerWith(t, reviews, WithMaxInFlightPerRequester(1, time.Hour))
	holdChecks(t, authorizer, reviews, alice, 1)

	d, err := authorizer.Authorize(context.Background(), Request{User: alice, SourceNamespace: "dst", SourceName: "disk", TargetNamespace: "dst", TargetName: "dv"})
	assert.NilError(t, err)
	assert.Check(t, d.Allowed)
	_, err = authorizer.Authorize(context.Background(), Request{User: alice, SourceName: "disk", TargetNamespace: "dst", TargetName: "dv"})
	assert.Check(t, is.ErrorIs(err, ErrInvalidRequest))
}

// Without the option (the controller's check before moving data) nothing
// is bounded.
func TestNoBoundByDefault(t *testing.T) {
	reviews := &fakeReviews{answers: allowEveryone(), block: make(chan struct{}), blockUser: "alice"}
	for _, authorizer := range []*Authorizer{
		newAuthorizerWith(t, reviews),
		newAuthorizerWith(t, reviews, WithMaxInFlightPerRequester(0, time.Second)),
	} {
		assert.Check(t, authorizer.limit == nil)
	}
	authorizer := newAuthorizerWith(t, reviews)
	held := holdChecks(t, authorizer, reviews, alice, 50)
	close(reviews.block)
	for range 50 {
		assert.NilError(t, <-held)
	}
}

// Many checks of one requester at once: never more in flight than the
// bound, and every one is answered (allowed, or refused for load).
func TestTheBoundHoldsUnderConcurrency(t *testing.T) {
	const bound, checks = 3, 200
	var (
		mu                sync.Mutex
		inFlight, maxSeen int
	)
	reviews := &fakeReviews{answers: allowEveryone()}
	authorizer := newAuthorizerWith(t, reviews, WithMaxInFlightPerRequester(bound, 10*time.Millisecond))
	// Count the reviews in flight around the fake's answer.
	inner := authorizer.reviews
	authorizer.reviews = countingReviews{SubjectAccessReviewInterface: inner, enter: func() {
		mu.Lock()
		inFlight++
		maxSeen = max(maxSeen, inFlight)
		mu.Unlock()
		time.Sleep(time.Millisecond)
	}, leave: func() {
		mu.Lock()
		inFlight--
		mu.Unlock()
	}}

	var wg sync.WaitGroup
	outcomes := make(chan error, checks)
	for i := range checks {
		wg.Go(func() {
			req := crossNamespace(alice)
			req.SourceName = fmt.Sprintf("disk-%d", i)
			d, err := authorizer.Authorize(context.Background(), req)
			if err == nil && !d.Allowed {
				err = errors.New("denied")
			}
			outcomes <- err
		})
	}
	wg.Wait()
	close(outcomes)
	for err := range outcomes {
		if err != nil {
			assert.Check(t, is.ErrorIs(err, ErrTooManyChecks))
		}
	}
	assert.Check(t, maxSeen <= bound, "%d reviews of one requester in flight, bound %d", maxSeen, bound)
	assert.Check(t, is.Equal(authorizer.limit.tracked(), 0))
}

func TestTooManyChecksIs429WithRetryAfterNamingTheRequesterNotTheSource(t *testing.T) {
	reviews := &fakeReviews{answers: allowEveryone(), block: make(chan struct{}), blockUser: "alice"}
	defer close(reviews.block)
	authorizer := newAuthorizerWith(t, reviews, WithMaxInFlightPerRequester(1, 0))
	holdChecks(t, authorizer, reviews, alice, 1)
	req := crossNamespace(alice)
	req.SourceName = "secret-disk"

	d, err := authorizer.Authorize(context.Background(), req)
	denial := DenialError(req, d, err)

	var status apierrors.APIStatus
	assert.Assert(t, errors.As(denial, &status))
	assert.Check(t, is.Equal(status.Status().Code, int32(http.StatusTooManyRequests)))
	assert.Check(t, apierrors.IsTooManyRequests(denial))
	seconds, ok := apierrors.SuggestsClientDelay(denial)
	assert.Check(t, ok && seconds == RetryAfterSeconds, "Retry-After %d, %v", seconds, ok)
	assert.Check(t, is.Equal(denial.Error(),
		`too many clone checks in flight: user "alice" has 1 in flight already, the most allowed per requester; retry in 1 s`))
	assert.Check(t, is.DeepEqual(d.AuditAnnotations(req), map[string]string{
		AuditDecision: DecisionDeny, AuditReason: throttledReason, AuditSource: "src/secret-disk", AuditTarget: "dst/dv",
	}))
}

func TestTooManyChecksLogsOneDecisionLine(t *testing.T) {
	reviews := &fakeReviews{answers: allowEveryone(), block: make(chan struct{}), blockUser: "alice"}
	defer close(reviews.block)
	var (
		mu    sync.Mutex
		lines []string
	)
	log := funcr.NewJSON(func(obj string) {
		mu.Lock()
		lines = append(lines, obj)
		mu.Unlock()
	}, funcr.Options{})
	authorizer := newAuthorizerWith(t, reviews, WithLogger(log), WithMaxInFlightPerRequester(1, 0))
	holdChecks(t, authorizer, reviews, alice, 1)

	_, _ = authorizer.Authorize(context.Background(), crossNamespace(alice))

	mu.Lock()
	defer mu.Unlock()
	assert.Assert(t, is.Len(lines, 1), "log lines: %q", lines)
	var got map[string]any
	assert.NilError(t, json.Unmarshal([]byte(lines[0]), &got))
	delete(got, "logger")
	assert.DeepEqual(t, got, map[string]any{
		"level": 0.0, "msg": "Clone refused: too many clone checks in flight for the requester",
		"decision": "deny", "user": "alice", "source": "src/disk", "target": "dst/dv", "via": "", "reason": throttledReason,
		"error": `too many clone checks in flight: user "alice" has 1 in flight already, the most allowed per requester; retry in 1 s`,
	})
}

// countingReviews calls enter and leave around each review.
type countingReviews struct {
	authorizationv1client.SubjectAccessReviewInterface
	enter, leave func()
}

func (c countingReviews) Create(ctx context.Context, review *authorizationv1.SubjectAccessReview, opts metav1.CreateOptions) (*authorizationv1.SubjectAccessReview, error) {
	c.enter()
	defer c.leave()
	return c.SubjectAccessReviewInterface.Create(ctx, review, opts)
}
