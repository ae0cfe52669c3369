package cloneauth

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/authentication/user"
	authorizationv1client "k8s.io/client-go/kubernetes/typed/authorization/v1"
)

// DefaultTimeout bounds each SubjectAccessReview unless WithTimeout says
// otherwise.
const DefaultTimeout = 10 * time.Second

// sameNamespaceReason explains why a same-namespace clone is not checked.
const sameNamespaceReason = "same-namespace clone: no permission needed beyond create datavolumes"

// throttledReason is the reason of a clone refused by the per-requester
// bound: no permission was asked about.
const throttledReason = "too many clone checks in flight for the requester"

// Authorizer decides clones by SubjectAccessReview.
type Authorizer struct {
	reviews authorizationv1client.SubjectAccessReviewInterface
	timeout time.Duration
	log     logr.Logger
	// cache holds recent answers; nil asks every time.
	cache *reviewCache
	// limit bounds the checks in flight per requester; nil bounds none.
	limit *requesterLimit
}

// Option configures an Authorizer.
type Option func(*Authorizer)

// WithTimeout bounds each SubjectAccessReview; a non-positive d keeps the
// default.
func WithTimeout(d time.Duration) Option {
	return func(a *Authorizer) {
		if d > 0 {
			a.timeout = d
		}
	}
}

// WithLogger sets where decisions are logged; the default discards them.
func WithLogger(log logr.Logger) Option {
	return func(a *Authorizer) { a.log = log }
}

// NewAuthorizer returns an Authorizer asking reviews.
func NewAuthorizer(reviews authorizationv1client.SubjectAccessReviewInterface, opts ...Option) *Authorizer {
	a := &Authorizer{reviews: reviews, timeout: DefaultTimeout, log: logr.Discard()}
	for _, opt := range opts {
		opt(a)
	}
	return a
}

// Authorize decides req and logs the decision. A non-nil error comes with a
// denial: the check could not be made, and the clone must be refused
// (ErrTooManyChecks: for now, to be retried).
func (a *Authorizer) Authorize(ctx context.Context, req Request) (Decision, error) {
	d, err := a.decide(ctx, req)
	a.logDecision(req, d, err)
	return d, err
}

func (a *Authorizer) decide(ctx context.Context, req Request) (Decision, error) {
	if !req.CrossNamespace() {
		return Decision{Allowed: true, Reason: sameNamespaceReason}, nil
	}
	if err := validateCrossNamespace(req); err != nil {
		return Decision{Reason: "invalid request"}, err
	}
	if a.limit != nil {
		release, err := a.limit.acquire(ctx, req.User.GetName())
		if err != nil {
			if errors.Is(err, ErrTooManyChecks) {
				return Decision{Reason: throttledReason}, err
			}
			return Decision{Reason: "authorization check failed"}, err
		}
		defer release()
	}
	permissions := permissionsFor(req)
	denied := Decision{Checked: true, Missing: describe(permissions[0].attributes)}
	for _, p := range permissions {
		status, err := a.review(ctx, req.User, p.attributes)
		if err != nil {
			denied.Reason = "authorization check failed"
			return denied, fmt.Errorf("%w for %s: %w", ErrCheckFailed, describe(p.attributes), err)
		}
		if status.Allowed {
			return Decision{Allowed: true, Checked: true, Via: p.via, Reason: status.Reason}, nil
		}
		// The first permission's reason says most about the denial.
		if denied.Reason == "" {
			denied.Reason = status.Reason
		}
		if denied.EvaluationError == "" {
			denied.EvaluationError = status.EvaluationError
		}
	}
	return denied, nil
}

func validateCrossNamespace(req Request) error {
	switch {
	case req.User == nil:
		return fmt.Errorf("%w: no user", ErrInvalidRequest)
	case req.SourceNamespace == "":
		return fmt.Errorf("%w: no source namespace", ErrInvalidRequest)
	case req.SourceName == "":
		return fmt.Errorf("%w: no source PersistentVolumeClaim name", ErrInvalidRequest)
	case req.TargetNamespace == "":
		return fmt.Errorf("%w: no target namespace", ErrInvalidRequest)
	}
	return nil
}

// review asks one SubjectAccessReview within the timeout. It stops waiting
// when the context ends even if the client does not, so no client can hold
// a request past the timeout.
func (a *Authorizer) review(ctx context.Context, u user.Info, attributes authorizationv1.ResourceAttributes) (*authorizationv1.SubjectAccessReviewStatus, error) {
	if a.reviews == nil {
		return nil, errors.New("no SubjectAccessReview client")
	}
	if a.cache == nil {
		return a.ask(ctx, u, attributes)
	}
	key, ok := a.cache.key(u, attributes)
	if !ok {
		return a.ask(ctx, u, attributes)
	}
	if status, hit := a.cache.get(key); hit {
		cacheHits.Inc()
		return status, nil
	}
	status, err := a.ask(ctx, u, attributes)
	if err == nil {
		a.cache.add(key, *status)
	}
	return status, err
}

// ask sends one SubjectAccessReview.
func (a *Authorizer) ask(ctx context.Context, u user.Info, attributes authorizationv1.ResourceAttributes) (*authorizationv1.SubjectAccessReviewStatus, error) {
	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()

	type answer struct {
		review *authorizationv1.SubjectAccessReview
		err    error
	}
	answers := make(chan answer, 1) // buffered: a late answer must not block the sender
	go func() {
		review, err := a.reviews.Create(ctx, subjectAccessReview(u, attributes), metav1.CreateOptions{})
		answers <- answer{review, err}
	}()

	select {
	case got := <-answers:
		if got.err != nil {
			return nil, got.err
		}
		if got.review == nil {
			return nil, errors.New("empty SubjectAccessReview response")
		}
		return &got.review.Status, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("no answer within %s: %w", a.timeout, ctx.Err())
	}
}

// logDecision writes the one log line of a decision. It names the user but
// never logs credentials. A denial or a failed check is logged at the
// default verbosity; an allowed clone at 2: every decision is in the audit
// log already (the clone.cdi.kubevirt.io/* annotations), and a line per
// allowed clone costs a busy server (and the node's log pipeline) more
// than the decision itself.
func (a *Authorizer) logDecision(req Request, d Decision, err error) {
	keysAndValues := []any{
		"decision", d.verdict(),
		"user", req.userName(),
		"source", req.source(),
		"target", req.target(),
		"via", d.Via,
		"reason", d.Reason,
	}
	if d.Missing != "" {
		keysAndValues = append(keysAndValues, "missing", d.Missing)
	}
	if d.EvaluationError != "" {
		keysAndValues = append(keysAndValues, "evaluationError", d.EvaluationError)
	}
	switch {
	case errors.Is(err, ErrTooManyChecks):
		// A load refusal, not a failed check: a decision line, not an
		// error, so a flood does not read as kube-apiserver failing.
		a.log.Info("Clone refused: too many clone checks in flight for the requester", append(keysAndValues, "error", err.Error())...)
		return
	case err != nil:
		a.log.Error(err, "Clone denied: authorization check failed", keysAndValues...)
		return
	}
	log := a.log
	if d.Allowed {
		log = log.V(2)
	}
	log.Info("Clone authorization decided", keysAndValues...)
}
