package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// retryAfterSeconds is what a refused request is told to wait.
const retryAfterSeconds = 1

// inFlightLimit bounds the admission requests served at once, so that slow
// or many clients cannot hold every goroutine and body buffer of the
// server. A request past the bound waits a little for a slot, then is
// answered 429 Too Many Requests with Retry-After.
//
// Why 429 with Retry-After: the webhook configurations fail closed
// (failurePolicy: Fail), so a refusal kube-apiserver does not retry fails
// the user's create. kube-apiserver calls admission webhooks with a client-go
// REST client, which retries a 429 or any 5xx that carries Retry-After
// (up to 10 times, within the webhook's timeoutSeconds), and nothing
// without it; its webhook utilities (DefaultShouldRetry) also retry a 429
// without the header. So a burst waits a second and goes through instead of
// failing. 429 rather than 503 because 503 already means "not ready"
// here (caches syncing) and is what kube-apiserver reports when the webhook
// cannot be reached at all: an overload stays distinguishable in
// kube-apiserver's log and its webhook metrics (code 429, "server-side
// throttling").
type inFlightLimit struct {
	slots chan struct{}
	wait  time.Duration
	log   logr.Logger
}

func newInFlightLimit(limit int, wait time.Duration, log logr.Logger) *inFlightLimit {
	return &inFlightLimit{slots: make(chan struct{}, limit), wait: wait, log: log}
}

// wrap serves next within the bound.
func (l *inFlightLimit) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !l.acquire(r) {
			l.refuse(w, r)
			return
		}
		defer func() { <-l.slots }()
		next.ServeHTTP(w, r)
	})
}

// acquire takes a slot, waiting at most l.wait, or less if the client goes.
func (l *inFlightLimit) acquire(r *http.Request) bool {
	select {
	case l.slots <- struct{}{}:
		return true
	default:
	}
	if l.wait <= 0 {
		return false
	}
	timer := time.NewTimer(l.wait)
	defer timer.Stop()
	select {
	case l.slots <- struct{}{}:
		return true
	case <-timer.C:
		return false
	case <-r.Context().Done():
		return false
	}
}

// refuse answers 429 with a Status, as kube-apiserver's own throttling does.
func (l *inFlightLimit) refuse(w http.ResponseWriter, r *http.Request) {
	refusedRequests.Inc()
	l.log.V(2).Info("Admission request refused: too many in flight", "limit", cap(l.slots), "path", r.URL.Path)
	status := apierrors.NewTooManyRequests(fmt.Sprintf(
		"the admission webhook is serving its maximum of %d requests; retry in %d s", cap(l.slots), retryAfterSeconds), retryAfterSeconds).ErrStatus
	status.TypeMeta = metav1.TypeMeta{APIVersion: "v1", Kind: "Status"}
	body, err := json.Marshal(status)
	if err != nil {
		http.Error(w, status.Message, http.StatusTooManyRequests)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds))
	w.WriteHeader(http.StatusTooManyRequests)
	_, _ = w.Write(body)
}
