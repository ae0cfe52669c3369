package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/component-base/metrics"
	"k8s.io/component-base/metrics/legacyregistry"
	_ "k8s.io/component-base/metrics/prometheus/restclient" // rest_client_* metrics, the rate limiter's wait among them
)

// refusedRequests counts the admission requests answered 429 because
// --max-requests-inflight were already being served.
var refusedRequests = metrics.NewCounter(&metrics.CounterOpts{
	Namespace:      "datavolume_webhook",
	Name:           "requests_refused_total",
	Help:           "Admission requests answered 429 Too Many Requests because the server was serving --max-requests-inflight already.",
	StabilityLevel: metrics.ALPHA,
})

func init() {
	legacyregistry.MustRegister(refusedRequests)
}

// metricsRoutes serve the legacy registry at /metrics. Among the metrics is
// rest_client_rate_limiter_duration_seconds: how long requests waited for
// their client's rate limiter; the clone checks' SubjectAccessReviews are
// the webhook's only POSTs.
func metricsRoutes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", legacyregistry.Handler())
	return mux
}

// servePlain serves handler over plain HTTP on address until ctx is done or
// stop is called: metrics, and the health checks for the kubelet's probes.
func servePlain(ctx context.Context, log logr.Logger, what, address string, handler http.Handler) (stop func(), err error) {
	listener, err := net.Listen("tcp", address)
	if err != nil {
		return nil, fmt.Errorf("listening for %s on %s: %w", what, address, err)
	}
	server := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 10 * time.Second, IdleTimeout: time.Minute}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := server.Serve(listener); !errors.Is(err, http.ErrServerClosed) {
			log.Error(err, "Serving failed", "what", what, "address", listener.Addr().String())
		}
	}()
	log.Info("Serving over plain HTTP", "what", what, "address", listener.Addr().String())
	return func() {
		shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
		defer cancel()
		_ = server.Shutdown(shutdownCtx)
		<-done
	}, nil
}
