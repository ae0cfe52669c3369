package cloneauth

import (
	"context"
	"sync"
	"testing"

	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// reviewAnswer is what the fake API server answers to a review of one resource.
type reviewAnswer struct {
	status authorizationv1.SubjectAccessReviewStatus
	err    error
}

// fakeReviews is a SubjectAccessReview API answering by resource
// ("datavolumes", "pods") and recording every review asked.
type fakeReviews struct {
	mu      sync.Mutex
	answers map[string]reviewAnswer
	asked   []authorizationv1.SubjectAccessReviewSpec
	// block, when set, holds every review until it is closed; of
	// blockUser's only, when that is set too.
	block     chan struct{}
	blockUser string
}

func newAuthorizerWith(t *testing.T, reviews *fakeReviews, opts ...Option) *Authorizer {
	t.Helper()
	return NewAuthorizer(reviews, opts...)
}

// Create answers a review. Not through client-go's fake clientset: it
// serializes every call, and a held review would hold all.
func (f *fakeReviews) Create(_ context.Context, review *authorizationv1.SubjectAccessReview, _ metav1.CreateOptions) (*authorizationv1.SubjectAccessReview, error) {
	f.mu.Lock()
	f.asked = append(f.asked, review.Spec)
	block := f.block
	if f.blockUser != "" && review.Spec.User != f.blockUser {
		block = nil
	}
	f.mu.Unlock()
	if block != nil {
		<-block
	}
	f.mu.Lock()
	answer := f.answers[review.Spec.ResourceAttributes.Resource]
	f.mu.Unlock()
	if answer.err != nil {
		return nil, answer.err
	}
	answered := review.DeepCopy()
	answered.Status = answer.status
	return answered, nil
}

func (f *fakeReviews) reviewsAsked() []authorizationv1.SubjectAccessReviewSpec {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.asked
}

// reviewsOf counts the reviews asked for user.
func (f *fakeReviews) reviewsOf(user string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, spec := range f.asked {
		if spec.User == user {
			n++
		}
	}
	return n
}
