package server

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/spf13/pflag"

	"github.com/datavolume/datavolume/pkg/cloneauth"
	"github.com/datavolume/datavolume/pkg/plan"
)

// Options are the webhook's flags.
type Options struct {
	// TLSCertFile and TLSPrivateKeyFile are the serving certificate and key,
	// reloaded when the files change.
	TLSCertFile       string
	TLSPrivateKeyFile string
	// ClientCAFile signs the certificates of the webhook's callers
	// (kube-apiserver and datavolume-apiserver); a client without one is
	// refused at the TLS handshake. AllowedClientNames narrows them to
	// these common names. InsecureAllowAnyClient serves any client instead,
	// and must be asked for by name.
	ClientCAFile           string
	AllowedClientNames     []string
	InsecureAllowAnyClient bool
	// HealthBindAddress serves /healthz and /readyz over plain HTTP for the
	// kubelet's probes, which present no client certificate; empty turns it
	// off.
	HealthBindAddress string
	// BindAddress and Port are where the server listens.
	BindAddress string
	Port        int
	// Kubeconfig is the cluster to read claims and pods from and to ask
	// SubjectAccessReviews of; empty means the in-cluster config.
	Kubeconfig string
	// FilesystemOverhead is counted when a Block source is cloned into a
	// Filesystem target.
	FilesystemOverhead float64
	// CloneCheckQPS and CloneCheckBurst limit the client that asks the
	// SubjectAccessReviews of VirtualMachine clones; see DefaultCloneCheckQPS.
	CloneCheckQPS   float32
	CloneCheckBurst int
	// CloneCheckCacheAllowedTTL and CloneCheckCacheDeniedTTL are how long
	// an allowed and a denied SubjectAccessReview answer is reused.
	CloneCheckCacheAllowedTTL, CloneCheckCacheDeniedTTL time.Duration
	// CloneCheckMaxInFlightPerUser bounds the clone checks in flight per
	// service account judged; see cloneauth.DefaultMaxInFlightPerRequester.
	CloneCheckMaxInFlightPerUser int
	// MetricsBindAddress is where /metrics is served over plain HTTP
	// (host:port); empty turns it off.
	MetricsBindAddress string

	// ReadHeaderTimeout, ReadTimeout, WriteTimeout and IdleTimeout bound what
	// a client may hold a connection for: its request's headers, its whole
	// request, the request with its answer, and the wait for the next
	// request on a kept-alive connection. See the Default constants.
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	WriteTimeout      time.Duration
	IdleTimeout       time.Duration
	// MaxRequestsInFlight bounds the admission requests served at once; one
	// more waits up to MaxRequestsInFlightWait for a slot, then is answered
	// 429 with Retry-After (see inFlightLimit).
	MaxRequestsInFlight     int
	MaxRequestsInFlightWait time.Duration
}

// The HTTPS server's limits. kube-apiserver sends a review of at most a few
// MiB over the cluster network in well under a second and gives the whole
// call timeoutSeconds (10 in artifacts/, 30 at most), so:
//   - headers within 5 s and the whole request within 10 s: a client that
//     dribbles them (slowloris) is cut off at that point;
//   - the answer within 30 s of the headers, the longest timeoutSeconds
//     kube-apiserver allows (a VM's clone check asks at most two
//     SubjectAccessReviews of 4 s each);
//   - an idle kept-alive connection closed after 120 s, longer than
//     client-go's 90 s idle timeout, so that kube-apiserver closes it first
//     and never sends a review on a connection this server is closing;
//   - 100 admission requests at once (each holds at most one 7 MiB body),
//     one more waiting at most 1 s for a slot.
const (
	DefaultReadHeaderTimeout       = 5 * time.Second
	DefaultReadTimeout             = 10 * time.Second
	DefaultWriteTimeout            = 30 * time.Second
	DefaultIdleTimeout             = 120 * time.Second
	DefaultMaxRequestsInFlight     = 100
	DefaultMaxRequestsInFlightWait = time.Second
)

// The clone checks' client limits, as datavolume-apiserver's: client-go's
// defaults (5 a second, 10 at once) had VirtualMachine creates with
// cross-namespace templates queue behind each other (issue 15). They are set at
// what kube-apiserver answers at most on a small machine (about 1900
// SubjectAccessReviews a second on 2 cores, measured), and stay finite, to
// bound what one replica asks of a larger kube-apiserver's authorizer.
const (
	DefaultCloneCheckQPS   float32 = 2000
	DefaultCloneCheckBurst int     = 4000
)

// NewOptions returns the defaults.
func NewOptions() *Options {
	return &Options{
		BindAddress:        "0.0.0.0",
		Port:               8443,
		FilesystemOverhead: float64(plan.DefaultFilesystemOverhead),
		CloneCheckQPS:      DefaultCloneCheckQPS,
		CloneCheckBurst:    DefaultCloneCheckBurst,
		MetricsBindAddress: "127.0.0.1:8080",
		HealthBindAddress:  "0.0.0.0:8081",

		CloneCheckCacheAllowedTTL:    cloneauth.DefaultCacheAllowedTTL,
		CloneCheckCacheDeniedTTL:     cloneauth.DefaultCacheDeniedTTL,
		CloneCheckMaxInFlightPerUser: cloneauth.DefaultMaxInFlightPerRequester,

		ReadHeaderTimeout:       DefaultReadHeaderTimeout,
		ReadTimeout:             DefaultReadTimeout,
		WriteTimeout:            DefaultWriteTimeout,
		IdleTimeout:             DefaultIdleTimeout,
		MaxRequestsInFlight:     DefaultMaxRequestsInFlight,
		MaxRequestsInFlightWait: DefaultMaxRequestsInFlightWait,
	}
}

// AddFlags registers the options' flags.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.TLSCertFile, "tls-cert-file", o.TLSCertFile, "File with the HTTPS serving certificate (PEM); reloaded when it changes.")
	fs.StringVar(&o.TLSPrivateKeyFile, "tls-private-key-file", o.TLSPrivateKeyFile, "File with the private key of --tls-cert-file (PEM); reloaded when it changes.")
	fs.StringVar(&o.ClientCAFile, "client-ca-file", o.ClientCAFile,
		"CA bundle (PEM) that signs the client certificates of the webhook's callers, kube-apiserver and datavolume-apiserver "+
			"(each presents one through its admission configuration's kubeconfig); any other client is refused at the TLS handshake. Reloaded when it changes.")
	fs.StringSliceVar(&o.AllowedClientNames, "allowed-client-names", o.AllowedClientNames,
		"Common names a caller's client certificate may have; empty allows any certificate --client-ca-file signed.")
	fs.BoolVar(&o.InsecureAllowAnyClient, "insecure-allow-any-client", o.InsecureAllowAnyClient,
		"Answer any client without a certificate instead of requiring --client-ca-file: anyone who reaches the port learns which claims exist, "+
			"their sizes and who may clone them. Only where nothing but the API servers can reach the webhook.")
	fs.StringVar(&o.HealthBindAddress, "health-bind-address", o.HealthBindAddress,
		"host:port to serve /healthz and /readyz on over plain HTTP, for the kubelet's probes (they present no client certificate); empty turns it off.")
	fs.StringVar(&o.BindAddress, "bind-address", o.BindAddress, "IP address to listen on.")
	fs.IntVar(&o.Port, "port", o.Port, "Port to serve HTTPS on.")
	fs.StringVar(&o.Kubeconfig, "kubeconfig", o.Kubeconfig, "Kubeconfig of the cluster; empty uses the in-cluster configuration.")
	fs.Float64Var(&o.FilesystemOverhead, "filesystem-overhead", o.FilesystemOverhead,
		"Share of a Filesystem volume taken by the filesystem (0 to <1); a Block source cloned into a Filesystem volume needs size/(1-overhead).")
	fs.Float32Var(&o.CloneCheckQPS, "clone-check-qps", o.CloneCheckQPS,
		"SubjectAccessReviews per second the clone checks of VirtualMachines may send kube-apiserver, on a client of their own; "+
			"above it admission waits, and a wait past the review's time limit denies.")
	fs.IntVar(&o.CloneCheckBurst, "clone-check-burst", o.CloneCheckBurst, "SubjectAccessReviews the clone checks may send at once above --clone-check-qps.")
	fs.DurationVar(&o.CloneCheckCacheAllowedTTL, "clone-check-cache-allowed-ttl", o.CloneCheckCacheAllowedTTL,
		"How long an allowed clone check's SubjectAccessReview answer is reused for the same service account, source and target namespace (0: never). "+
			"It admits the VirtualMachine only: datavolume-controller asks again, uncached, before any data moves.")
	fs.DurationVar(&o.CloneCheckCacheDeniedTTL, "clone-check-cache-denied-ttl", o.CloneCheckCacheDeniedTTL,
		"How long a denied clone check's answer is reused (0: never); a RoleBinding just added takes effect after it.")
	fs.IntVar(&o.CloneCheckMaxInFlightPerUser, "clone-check-max-in-flight-per-user", o.CloneCheckMaxInFlightPerUser,
		fmt.Sprintf("Clone checks one ServiceAccount (the one a VirtualMachine's clones are judged for) may have in flight at once; one more waits up to %s for a slot, "+
			"then the VirtualMachine is refused with 429 Too Many Requests and Retry-After, so that one tenant's flood cannot hold up everyone else's checks.",
			cloneauth.DefaultInFlightWait))
	fs.StringVar(&o.MetricsBindAddress, "metrics-bind-address", o.MetricsBindAddress,
		"host:port to serve Prometheus metrics on, over plain HTTP at /metrics (client-go's rest_client_* among them); empty turns it off. "+
			"The default is reachable from inside the pod only (kubectl port-forward).")
	fs.DurationVar(&o.ReadHeaderTimeout, "read-header-timeout", o.ReadHeaderTimeout,
		"Time a client has to send a request's headers (and the TLS handshake); a slower one is disconnected.")
	fs.DurationVar(&o.ReadTimeout, "read-timeout", o.ReadTimeout,
		"Time a client has to send a whole request, body included; a slower one is cut off. Keep it within the webhooks' timeoutSeconds.")
	fs.DurationVar(&o.WriteTimeout, "write-timeout", o.WriteTimeout,
		"Time from a request's headers to the end of its answer; at least --read-timeout. Keep it at least the webhooks' timeoutSeconds.")
	fs.DurationVar(&o.IdleTimeout, "idle-timeout", o.IdleTimeout,
		"Time a kept-alive connection may wait for its next request; above the API server's own idle timeout (90s) so it closes first.")
	fs.IntVar(&o.MaxRequestsInFlight, "max-requests-inflight", o.MaxRequestsInFlight,
		"Admission requests served at once; one more waits up to --max-requests-inflight-wait, then is answered 429 with Retry-After, "+
			"which the API server retries within the webhook's timeoutSeconds. Health checks are not counted.")
	fs.DurationVar(&o.MaxRequestsInFlightWait, "max-requests-inflight-wait", o.MaxRequestsInFlightWait,
		"How long an admission request past --max-requests-inflight waits for a slot before it is answered 429; 0 answers at once.")
}

// Validate reports every flag that is wrong.
func (o *Options) Validate() error {
	var errs []error
	if o.TLSCertFile == "" || o.TLSPrivateKeyFile == "" {
		errs = append(errs, errors.New("--tls-cert-file and --tls-private-key-file are required: the API server calls webhooks over HTTPS only"))
	}
	switch {
	case o.ClientCAFile == "" && !o.InsecureAllowAnyClient:
		errs = append(errs, errors.New("--client-ca-file is required: without it any pod could ask the webhook which claims exist and who may clone them "+
			"(--insecure-allow-any-client serves any client, where nothing else can reach the webhook)"))
	case o.ClientCAFile != "" && o.InsecureAllowAnyClient:
		errs = append(errs, errors.New("--client-ca-file and --insecure-allow-any-client contradict each other"))
	case o.ClientCAFile == "" && len(o.AllowedClientNames) > 0:
		errs = append(errs, errors.New("--allowed-client-names needs --client-ca-file"))
	}
	if net.ParseIP(o.BindAddress) == nil {
		errs = append(errs, fmt.Errorf("--bind-address %q is not an IP address", o.BindAddress))
	}
	if o.Port < 1 || o.Port > 65535 {
		errs = append(errs, fmt.Errorf("--port %d is not between 1 and 65535", o.Port))
	}
	if err := plan.FilesystemOverhead(o.FilesystemOverhead).Validate(); err != nil {
		errs = append(errs, fmt.Errorf("--filesystem-overhead: %w", err))
	}
	if o.CloneCheckQPS <= 0 {
		errs = append(errs, fmt.Errorf("--clone-check-qps must be positive, not %v: the clone checks' client is always limited", o.CloneCheckQPS))
	}
	if o.CloneCheckBurst <= 0 {
		errs = append(errs, fmt.Errorf("--clone-check-burst must be positive, not %d", o.CloneCheckBurst))
	}
	if o.CloneCheckMaxInFlightPerUser <= 0 {
		errs = append(errs, fmt.Errorf("--clone-check-max-in-flight-per-user must be positive, not %d: one tenant's clones must not hold up everyone's checks", o.CloneCheckMaxInFlightPerUser))
	}
	for _, timeout := range []struct {
		flag  string
		value time.Duration
	}{
		{"--read-header-timeout", o.ReadHeaderTimeout}, {"--read-timeout", o.ReadTimeout},
		{"--write-timeout", o.WriteTimeout}, {"--idle-timeout", o.IdleTimeout},
	} {
		if timeout.value <= 0 {
			errs = append(errs, fmt.Errorf("%s must be positive, not %s: without it a slow client holds a connection for ever", timeout.flag, timeout.value))
		}
	}
	if o.ReadTimeout > 0 && o.WriteTimeout > 0 && o.WriteTimeout < o.ReadTimeout {
		errs = append(errs, fmt.Errorf("--write-timeout %s is shorter than --read-timeout %s: a request read in time could not be answered", o.WriteTimeout, o.ReadTimeout))
	}
	if o.MaxRequestsInFlight <= 0 {
		errs = append(errs, fmt.Errorf("--max-requests-inflight must be positive, not %d", o.MaxRequestsInFlight))
	}
	if o.MaxRequestsInFlightWait < 0 {
		errs = append(errs, fmt.Errorf("--max-requests-inflight-wait must not be negative, not %s", o.MaxRequestsInFlightWait))
	}
	if o.MetricsBindAddress != "" {
		if err := validateHostPort(o.MetricsBindAddress); err != nil {
			errs = append(errs, fmt.Errorf("--metrics-bind-address: %w", err))
		}
	}
	if o.HealthBindAddress != "" {
		if err := validateHostPort(o.HealthBindAddress); err != nil {
			errs = append(errs, fmt.Errorf("--health-bind-address: %w", err))
		}
	}
	return errors.Join(errs...)
}

// validateHostPort accepts an IP address (or none, for every address) and a
// port.
func validateHostPort(address string) error {
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return err
	}
	if host != "" && net.ParseIP(host) == nil {
		return fmt.Errorf("%q is not an IP address", host)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("port %q is not between 1 and 65535", port)
	}
	return nil
}
