package cloneauth

import (
	"context"
	"fmt"
	"sync"
	"time"

	"k8s.io/component-base/metrics"
	"k8s.io/component-base/metrics/legacyregistry"
)

// Defaults of the per-requester bound of the admission checks
// (datavolume-apiserver and the webhook).
//
// Why a bound per requester: kube-apiserver's priority and fairness sees
// every SubjectAccessReview of a server as one flow (its service account),
// served first come, first served, so whoever sends most checks is ahead of
// everyone else in that queue. A user allowed to create DataVolumes in one
// namespace could send hundreds of refused clones at once (each a review of
// its own, so the cache absorbs none), and everybody's check would wait
// behind them until it timed out and failed closed. With at most 8 checks
// of one requester in flight, another requester's check waits behind at most
// 8 of the flooder's reviews per server replica. A refused create is told to
// retry: 429 with Retry-After, which client-go and kubectl honour.
const (
	DefaultMaxInFlightPerRequester = 8
	// DefaultInFlightWait is how long a check waits for one of its
	// requester's slots before it is refused: long enough to ride out a
	// burst (a check takes milliseconds), short against the create's own
	// time limits (the webhook's 10 s).
	DefaultInFlightWait = time.Second
	// RetryAfterSeconds is what a refused requester is told to wait.
	RetryAfterSeconds = 1
)

// requesterLimit bounds the checks in flight per requester. It holds an
// entry only for a requester with checks in flight or waiting, so its
// memory is bounded by the requests being served.
type requesterLimit struct {
	max  int
	wait time.Duration

	mu         sync.Mutex
	requesters map[string]*requesterSlots
}

// requesterSlots are one requester's slots, and how many checks hold or
// wait for one (the entry goes when none does).
type requesterSlots struct {
	slots chan struct{}
	users int
}

// WithMaxInFlightPerRequester bounds the checks in flight per requester
// (keyed by the name of the user judged: the requesting user, or for a VM's
// template its service account) to limit; one more waits up to wait for a
// slot, then is refused with ErrTooManyChecks. A non-positive limit bounds
// nothing: the controller's check before moving data is one per clone and
// must not be refused for load.
func WithMaxInFlightPerRequester(limit int, wait time.Duration) Option {
	return func(a *Authorizer) {
		if limit <= 0 {
			a.limit = nil
			return
		}
		a.limit = &requesterLimit{max: limit, wait: max(wait, 0), requesters: map[string]*requesterSlots{}}
	}
}

// acquire takes one of requester's slots, waiting at most l.wait. The
// error is ErrTooManyChecks when none freed in time, ErrCheckFailed when
// ctx ended first.
func (l *requesterLimit) acquire(ctx context.Context, requester string) (release func(), err error) {
	l.mu.Lock()
	s := l.requesters[requester]
	if s == nil {
		s = &requesterSlots{slots: make(chan struct{}, l.max)}
		l.requesters[requester] = s
	}
	s.users++
	l.mu.Unlock()

	release = func() {
		<-s.slots
		l.leave(requester, s)
	}
	select {
	case s.slots <- struct{}{}:
		return release, nil
	default:
	}
	timer := time.NewTimer(l.wait)
	defer timer.Stop()
	select {
	case s.slots <- struct{}{}:
		return release, nil
	case <-timer.C:
		l.leave(requester, s)
		throttledChecks.Inc()
		return nil, fmt.Errorf("%w: user %q has %d in flight already, the most allowed per requester; retry in %d s",
			ErrTooManyChecks, requester, l.max, RetryAfterSeconds)
	case <-ctx.Done():
		l.leave(requester, s)
		return nil, fmt.Errorf("%w: the request ended while waiting for one of user %q's %d clone check slots: %w",
			ErrCheckFailed, requester, l.max, ctx.Err())
	}
}

// leave forgets one holder or waiter of s, and s with the last.
func (l *requesterLimit) leave(requester string, s *requesterSlots) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s.users--
	if s.users == 0 {
		delete(l.requesters, requester)
	}
}

// tracked is how many requesters hold or wait for a slot (for tests).
func (l *requesterLimit) tracked() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.requesters)
}

// throttledChecks counts checks refused by the per-requester bound.
var throttledChecks = metrics.NewCounter(&metrics.CounterOpts{
	Name:           "datavolume_clone_check_throttled_total",
	Help:           "Clone checks refused with 429 Too Many Requests because their requester had the most clone checks in flight allowed per requester already.",
	StabilityLevel: metrics.ALPHA,
})

func init() {
	legacyregistry.MustRegister(throttledChecks)
}
