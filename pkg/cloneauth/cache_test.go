package cloneauth

import (
	"context"
	"errors"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
	authorizationv1 "k8s.io/api/authorization/v1"
	"k8s.io/apiserver/pkg/authentication/user"
)

func TestCacheReusesAnAllowedAnswerForTheSameReviewOnly(t *testing.T) {
	reviews := &fakeReviews{answers: map[string]reviewAnswer{"datavolumes": {status: authorizationv1.SubjectAccessReviewStatus{Allowed: true, Reason: rbacAllowed}}}}
	authorizer := newAuthorizerWith(t, reviews, WithCache(time.Minute, time.Minute))
	ctx := context.Background()

	for range 3 {
		d, err := authorizer.Authorize(ctx, crossNamespace(alice))
		assert.NilError(t, err)
		assert.Check(t, d.Allowed)
		assert.Check(t, is.Equal(d.Reason, rbacAllowed), "a cached answer keeps its reason for the audit trail")
	}
	assert.Check(t, is.Len(reviews.reviewsAsked(), 1))

	// Anything else in the review asks again: another source, another
	// group of the same user, another user.
	other := crossNamespace(alice)
	other.SourceName = "other-disk"
	_, err := authorizer.Authorize(ctx, other)
	assert.NilError(t, err)
	fewerGroups := &user.DefaultInfo{Name: alice.Name, UID: alice.UID, Groups: []string{user.AllAuthenticated}, Extra: alice.Extra}
	_, err = authorizer.Authorize(ctx, crossNamespace(fewerGroups))
	assert.NilError(t, err)
	_, err = authorizer.Authorize(ctx, crossNamespace(&user.DefaultInfo{Name: "bob"}))
	assert.NilError(t, err)
	assert.Check(t, is.Len(reviews.reviewsAsked(), 4))
}

func TestCacheKeepsAnswersForTheirTTL(t *testing.T) {
	reviews := &fakeReviews{answers: map[string]reviewAnswer{
		"datavolumes": {status: authorizationv1.SubjectAccessReviewStatus{Allowed: false}},
		"pods":        {status: authorizationv1.SubjectAccessReviewStatus{Allowed: false}},
	}}
	authorizer := newAuthorizerWith(t, reviews, WithCache(time.Minute, 50*time.Millisecond))
	ctx := context.Background()

	d, err := authorizer.Authorize(ctx, crossNamespace(alice))
	assert.NilError(t, err)
	assert.Check(t, !d.Allowed)
	assert.Check(t, is.Len(reviews.reviewsAsked(), 2), "datavolumes/source, then the pods fallback")
	d, err = authorizer.Authorize(ctx, crossNamespace(alice))
	assert.NilError(t, err)
	assert.Check(t, !d.Allowed)
	assert.Check(t, is.Equal(d.Missing, describe(dataVolumesSourceOfDisk)))
	assert.Check(t, is.Len(reviews.reviewsAsked(), 2), "a denial is reused within its TTL")

	// The RoleBinding is added: after the denied TTL the clone is allowed.
	reviews.mu.Lock()
	reviews.answers["datavolumes"] = reviewAnswer{status: authorizationv1.SubjectAccessReviewStatus{Allowed: true}}
	reviews.mu.Unlock()
	time.Sleep(100 * time.Millisecond)
	d, err = authorizer.Authorize(ctx, crossNamespace(alice))
	assert.NilError(t, err)
	assert.Check(t, d.Allowed)
	assert.Check(t, is.Len(reviews.reviewsAsked(), 3))
}

func TestCacheNeverKeepsErrorsOrAKindWithoutTTL(t *testing.T) {
	reviews := &fakeReviews{answers: map[string]reviewAnswer{"datavolumes": {err: errors.New("connection refused")}}}
	authorizer := newAuthorizerWith(t, reviews, WithCache(time.Minute, 0))
	ctx := context.Background()
	for range 2 {
		_, err := authorizer.Authorize(ctx, crossNamespace(alice))
		assert.Check(t, is.ErrorIs(err, ErrCheckFailed))
	}
	assert.Check(t, is.Len(reviews.reviewsAsked(), 2), "a failed check is asked again")

	reviews.mu.Lock()
	reviews.answers["datavolumes"] = reviewAnswer{status: authorizationv1.SubjectAccessReviewStatus{Allowed: false}}
	reviews.answers["pods"] = reviewAnswer{status: authorizationv1.SubjectAccessReviewStatus{Allowed: false}}
	reviews.mu.Unlock()
	for range 2 {
		d, err := authorizer.Authorize(ctx, crossNamespace(alice))
		assert.NilError(t, err)
		assert.Check(t, !d.Allowed)
	}
	assert.Check(t, is.Len(reviews.reviewsAsked(), 6), "denials are not cached with a denied TTL of 0")
}

func TestNoCacheAsksEveryTime(t *testing.T) {
	reviews := &fakeReviews{answers: map[string]reviewAnswer{"datavolumes": {status: authorizationv1.SubjectAccessReviewStatus{Allowed: true}}}}
	authorizer := newAuthorizerWith(t, reviews) // the controller's: it guards moving data
	for range 3 {
		_, err := authorizer.Authorize(context.Background(), crossNamespace(alice))
		assert.NilError(t, err)
	}
	assert.Check(t, is.Len(reviews.reviewsAsked(), 3))
}
