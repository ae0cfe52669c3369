// Package endpoints routes the webhook's HTTP paths to the admission
// handlers and answers the health checks. It is kept apart from the server
// (flags, certificates, informers) so that its fuzz test builds without
// client-go's clientsets.
package endpoints

import (
	"net/http"

	"github.com/go-logr/logr"
	corev1listers "k8s.io/client-go/listers/core/v1"

	"github.com/datavolume/datavolume/pkg/plan"
	"github.com/datavolume/datavolume/pkg/webhook"
	"github.com/datavolume/datavolume/pkg/webhook/admission"
	"github.com/datavolume/datavolume/pkg/webhook/datavolume"
	"github.com/datavolume/datavolume/pkg/webhook/virtualmachine"
)

// Dependencies are what the admission handlers read and ask.
type Dependencies struct {
	Claims             corev1listers.PersistentVolumeClaimLister
	Pods               corev1listers.PodLister
	AuthorizeClone     virtualmachine.CloneAuthorizeFunc
	FilesystemOverhead plan.FilesystemOverhead
	// Ready reports whether the listers' caches have synced.
	Ready func() bool
	// Limit wraps every admission endpoint, not the health checks (the
	// server's bound on requests in flight); nil, none.
	Limit func(http.Handler) http.Handler
	Log   logr.Logger
}

// New routes the admission endpoints and the health checks.
// Admission waits for readiness: an unsynced cache would report every
// source missing.
func New(deps Dependencies) http.Handler {
	rules := &datavolume.Rules{
		Lookups:            datavolume.Lookups{Claims: deps.Claims, Pods: deps.Pods},
		FilesystemOverhead: deps.FilesystemOverhead,
	}
	decoder := datavolume.NewDecoder()
	admit := func(name string, handler admission.Handler) http.Handler {
		admitting := whenReady(deps.Ready, &admission.Webhook{Handler: handler, Log: deps.Log.WithName(name)})
		if deps.Limit != nil {
			return deps.Limit(admitting)
		}
		return admitting
	}

	mux := http.NewServeMux()
	mux.Handle(webhook.MutateDataVolumesPath, admit("mutate-datavolumes",
		&datavolume.MutatingHandler{Rules: rules, Decoder: decoder}))
	mux.Handle(webhook.ValidateDataVolumesPath, admit("validate-datavolumes",
		&datavolume.ValidatingHandler{Rules: rules, Decoder: decoder}))
	mux.Handle(webhook.ValidateVirtualMachinesPath, admit("validate-virtualmachines",
		&virtualmachine.Handler{Admitter: &virtualmachine.Admitter{Rules: rules, Decoder: decoder, AuthorizeClone: deps.AuthorizeClone}}))
	health := Health(deps.Ready)
	mux.Handle("/healthz", health)
	mux.Handle("/readyz", health)
	return mux
}

// Health serves /healthz, and /readyz until ready says the caches are
// synced, and nothing else: what the kubelet's probes may reach without a
// client certificate.
func Health(ready func() bool) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { writeText(w, http.StatusOK, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !ready() {
			writeText(w, http.StatusServiceUnavailable, "informer caches are not synced yet")
			return
		}
		writeText(w, http.StatusOK, "ok")
	})
	return mux
}

// whenReady answers 503 until ready, so the API server retries or fails
// closed instead of getting decisions made on an empty cache.
func whenReady(ready func() bool, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !ready() {
			writeText(w, http.StatusServiceUnavailable, "not ready: informer caches are syncing")
			return
		}
		next.ServeHTTP(w, r)
	})
}

func writeText(w http.ResponseWriter, code int, text string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	_, _ = w.Write([]byte(text + "\n"))
}
