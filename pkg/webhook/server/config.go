package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/datavolume/datavolume/pkg/cloneauth"
	"github.com/datavolume/datavolume/pkg/plan"
	"github.com/datavolume/datavolume/pkg/webhook/endpoints"
)

const (
	// subjectAccessReviewTimeout bounds each review the clone check asks:
	// the API server gives the whole webhook call 10 seconds, and a denied
	// clone asks twice (datavolumes/source, then the pods fallback).
	subjectAccessReviewTimeout = 4 * time.Second
	// shutdownGrace lets requests in flight finish on SIGTERM.
	shutdownGrace = 10 * time.Second
)

// Config is validated Options with the clients they lead to.
type Config struct {
	options Options
	// client feeds the informers; cloneChecks asks the SubjectAccessReviews,
	// with limits of its own.
	client      kubernetes.Interface
	cloneChecks kubernetes.Interface
	certificate *servingCertificate
	// callers verifies the clients' certificates; nil serves any client
	// (--insecure-allow-any-client).
	callers *callerCertificates
}

// Config validates the options, loads the serving certificate and builds
// the cluster client.
func (o *Options) Config() (*Config, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	restConfig, err := restConfigFor(o.Kubeconfig)
	if err != nil {
		return nil, err
	}
	client, err := kubernetes.NewForConfig(restConfig)
	if err != nil {
		return nil, fmt.Errorf("building the Kubernetes client: %w", err)
	}
	cloneChecks, err := kubernetes.NewForConfig(o.cloneCheckClientConfig(restConfig))
	if err != nil {
		return nil, fmt.Errorf("building the client of the clone checks: %w", err)
	}
	certificate, err := newServingCertificate(o.TLSCertFile, o.TLSPrivateKeyFile)
	if err != nil {
		return nil, err
	}
	config := &Config{options: *o, client: client, cloneChecks: cloneChecks, certificate: certificate}
	if o.ClientCAFile != "" {
		if config.callers, err = newCallerCertificates(o.ClientCAFile, o.AllowedClientNames); err != nil {
			return nil, err
		}
	}
	return config, nil
}

// cloneCheckClientConfig is base with the clone checks' own limits
// (cloneauth.ClientConfig).
func (o *Options) cloneCheckClientConfig(base *rest.Config) *rest.Config {
	return cloneauth.ClientConfig(base, o.CloneCheckQPS, o.CloneCheckBurst)
}

func restConfigFor(kubeconfig string) (*rest.Config, error) {
	if kubeconfig == "" {
		config, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("no --kubeconfig given and not running in a cluster: %w", err)
		}
		return config, nil
	}
	config, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("loading kubeconfig %s: %w", kubeconfig, err)
	}
	return config, nil
}

// Run serves until ctx is done, then shuts down gracefully. The logger
// comes from ctx.
func (c *Config) Run(ctx context.Context) error {
	log := logr.FromContextOrDiscard(ctx)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	factory := informers.NewSharedInformerFactory(c.client, 0)
	claims := factory.Core().V1().PersistentVolumeClaims()
	pods := factory.Core().V1().Pods()
	if err := pods.Informer().SetTransform(trimPod); err != nil {
		return fmt.Errorf("trimming cached pods: %w", err)
	}
	authorizer := cloneauth.NewAuthorizer(c.cloneChecks.AuthorizationV1().SubjectAccessReviews(),
		cloneauth.WithTimeout(subjectAccessReviewTimeout), cloneauth.WithLogger(log.WithName("cloneauth")),
		cloneauth.WithCache(c.options.CloneCheckCacheAllowedTTL, c.options.CloneCheckCacheDeniedTTL),
		cloneauth.WithMaxInFlightPerRequester(c.options.CloneCheckMaxInFlightPerUser, cloneauth.DefaultInFlightWait))

	var ready atomic.Bool
	handler := c.routes(endpoints.Dependencies{
		Claims:             claims.Lister(),
		Pods:               pods.Lister(),
		AuthorizeClone:     authorizer.Authorize,
		FilesystemOverhead: plan.FilesystemOverhead(c.options.FilesystemOverhead),
		Ready:              ready.Load,
		Log:                log,
	})

	go c.certificate.content.Run(ctx, 1)
	if c.callers != nil {
		go c.callers.ca.Run(ctx, 1)
	} else {
		log.Info("Serving any client: --insecure-allow-any-client")
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	go func() {
		for informer, synced := range factory.WaitForCacheSync(ctx.Done()) {
			if !synced {
				log.Info("Informer cache did not sync before shutdown", "informer", informer.String())
				return
			}
		}
		ready.Store(true)
		log.Info("Informer caches synced; ready to admit")
	}()

	if c.options.MetricsBindAddress != "" {
		stopMetrics, err := servePlain(ctx, log, "metrics", c.options.MetricsBindAddress, metricsRoutes())
		if err != nil {
			return err
		}
		defer stopMetrics()
	}
	if c.options.HealthBindAddress != "" {
		stopHealth, err := servePlain(ctx, log, "health checks", c.options.HealthBindAddress, endpoints.Health(ready.Load))
		if err != nil {
			return err
		}
		defer stopHealth()
	}
	address := net.JoinHostPort(c.options.BindAddress, strconv.Itoa(c.options.Port))
	listener, err := net.Listen("tcp", address)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", address, err)
	}
	return c.serve(ctx, log, listener, handler)
}

// routes are the webhook's endpoints, the admission ones within
// --max-requests-inflight.
func (c *Config) routes(deps endpoints.Dependencies) http.Handler {
	deps.Limit = newInFlightLimit(c.options.MaxRequestsInFlight, c.options.MaxRequestsInFlightWait, deps.Log.WithName("inflight")).wrap
	return endpoints.New(deps)
}

// newHTTPServer is the HTTPS server of handler, with the options' time
// limits: a client that sends its request slowly, or never finishes it, is
// cut off (they apply to HTTP/2 streams too), and the TLS handshake is
// bounded by the shortest of them.
func (c *Config) newHTTPServer(handler http.Handler) *http.Server {
	tlsConfig := newTLSConfig(c.certificate)
	if c.callers != nil {
		c.callers.require(tlsConfig)
	}
	return &http.Server{
		Handler:           handler,
		TLSConfig:         tlsConfig,
		ReadHeaderTimeout: c.options.ReadHeaderTimeout,
		ReadTimeout:       c.options.ReadTimeout,
		WriteTimeout:      c.options.WriteTimeout,
		IdleTimeout:       c.options.IdleTimeout,
	}
}

// serve runs the HTTPS server on listener until ctx is done or it fails.
func (c *Config) serve(ctx context.Context, log logr.Logger, listener net.Listener, handler http.Handler) error {
	address := listener.Addr().String()
	server := c.newHTTPServer(handler)
	served := make(chan error, 1)
	go func() { served <- server.ServeTLS(listener, "", "") }()
	log.Info("Serving admission webhooks", "address", listener.Addr().String())

	select {
	case err := <-served:
		return fmt.Errorf("serving HTTPS on %s: %w", address, err)
	case <-ctx.Done():
	}
	log.Info("Shutting down", "grace", shutdownGrace)
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
	defer cancel()
	if err := server.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutting down the HTTPS server: %w", err)
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serving HTTPS on %s: %w", address, err)
	}
	return nil
}
