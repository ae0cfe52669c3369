package cloneauth

import (
	"sync"
	"testing"

	authorizationv1 "k8s.io/api/authorization/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"
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
	// block, when set, holds every review until it is closed.
	block chan struct{}
}

func newAuthorizerWith(t *testing.T, reviews *fakeReviews, opts ...Option) *Authorizer {
	t.Helper()
	client := fake.NewClientset()
	client.PrependReactor("create", "subjectaccessreviews", reviews.react)
	return NewAuthorizer(client.AuthorizationV1().SubjectAccessReviews(), opts...)
}

func (f *fakeReviews) react(action clienttesting.Action) (bool, runtime.Object, error) {
	review := action.(clienttesting.CreateAction).GetObject().(*authorizationv1.SubjectAccessReview)
	f.mu.Lock()
	f.asked = append(f.asked, review.Spec)
	block := f.block
	f.mu.Unlock()
	if block != nil {
		<-block
	}
	answer := f.answers[review.Spec.ResourceAttributes.Resource]
	if answer.err != nil {
		return true, nil, answer.err
	}
	answered := review.DeepCopy()
	answered.Status = answer.status
	return true, answered, nil
}

func (f *fakeReviews) reviewsAsked() []authorizationv1.SubjectAccessReviewSpec {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.asked
}
