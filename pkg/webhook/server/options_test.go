package server

import (
	"testing"
	"time"

	"github.com/spf13/pflag"
	"gotest.tools/v3/assert"
)

func TestOptionsFlags(t *testing.T) {
	options := NewOptions()
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	options.AddFlags(fs)
	assert.NilError(t, fs.Parse([]string{
		"--tls-cert-file=/certs/tls.crt", "--tls-private-key-file=/certs/tls.key",
		"--bind-address=127.0.0.1", "--port=9443", "--kubeconfig=/kube/config", "--filesystem-overhead=0.1",
		"--clone-check-qps=50.5", "--clone-check-burst=75", "--metrics-bind-address=:9090",
		"--read-header-timeout=2s", "--read-timeout=3s", "--write-timeout=20s", "--idle-timeout=95s",
		"--max-requests-inflight=7", "--max-requests-inflight-wait=250ms",
		"--clone-check-cache-allowed-ttl=3s", "--clone-check-cache-denied-ttl=0", "--clone-check-max-in-flight-per-user=4",
		"--client-ca-file=/ca/ca.crt", "--allowed-client-names=kube-apiserver,datavolume-apiserver", "--health-bind-address=:9091",
	}))
	assert.DeepEqual(t, *options, Options{
		TLSCertFile: "/certs/tls.crt", TLSPrivateKeyFile: "/certs/tls.key",
		ClientCAFile: "/ca/ca.crt", AllowedClientNames: []string{"kube-apiserver", "datavolume-apiserver"}, HealthBindAddress: ":9091",
		BindAddress: "127.0.0.1", Port: 9443, Kubeconfig: "/kube/config", FilesystemOverhead: 0.1,
		CloneCheckQPS: 50.5, CloneCheckBurst: 75, MetricsBindAddress: ":9090",
		CloneCheckCacheAllowedTTL: 3 * time.Second, CloneCheckMaxInFlightPerUser: 4,
		ReadHeaderTimeout: 2 * time.Second, ReadTimeout: 3 * time.Second, WriteTimeout: 20 * time.Second, IdleTimeout: 95 * time.Second,
		MaxRequestsInFlight: 7, MaxRequestsInFlightWait: 250 * time.Millisecond,
	})
	assert.NilError(t, options.Validate())
}

func TestOptionsDefaults(t *testing.T) {
	assert.DeepEqual(t, *NewOptions(), Options{BindAddress: "0.0.0.0", Port: 8443, FilesystemOverhead: 0.055,
		CloneCheckQPS: DefaultCloneCheckQPS, CloneCheckBurst: DefaultCloneCheckBurst, MetricsBindAddress: "127.0.0.1:8080",
		HealthBindAddress:         "0.0.0.0:8081",
		CloneCheckCacheAllowedTTL: 10 * time.Second, CloneCheckCacheDeniedTTL: 2 * time.Second, CloneCheckMaxInFlightPerUser: 8,
		ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second, IdleTimeout: 120 * time.Second,
		MaxRequestsInFlight: 100, MaxRequestsInFlightWait: time.Second})
	// The answer may take as long as the longest timeoutSeconds kube-apiserver
	// allows a webhook; an idle connection outlives client-go's 90 s, so the
	// client closes it first.
	assert.Assert(t, DefaultWriteTimeout >= 30*time.Second)
	assert.Assert(t, DefaultIdleTimeout > 90*time.Second)
	assert.Assert(t, DefaultReadTimeout <= 10*time.Second)
	// Far above client-go's 5 a second and 10 at once, which had VirtualMachine
	// clone checks queue (issue 15), and finite.
	assert.Assert(t, DefaultCloneCheckQPS >= 500)
	assert.Assert(t, DefaultCloneCheckBurst >= int(DefaultCloneCheckQPS))
}

func TestOptionsValidate(t *testing.T) {
	valid := func() *Options {
		o := NewOptions()
		o.TLSCertFile, o.TLSPrivateKeyFile = "tls.crt", "tls.key"
		o.ClientCAFile = "client-ca.crt"
		return o
	}
	tests := []struct {
		name    string
		modify  func(*Options)
		wantErr string
	}{
		{"defaults with certificates", func(*Options) {}, ""},
		{"no overhead", func(o *Options) { o.FilesystemOverhead = 0 }, ""},
		{"IPv6 bind address", func(o *Options) { o.BindAddress = "::" }, ""},
		{"no certificate", func(o *Options) { o.TLSCertFile = "" },
			"--tls-cert-file and --tls-private-key-file are required: the API server calls webhooks over HTTPS only"},
		{"no key", func(o *Options) { o.TLSPrivateKeyFile = "" },
			"--tls-cert-file and --tls-private-key-file are required: the API server calls webhooks over HTTPS only"},
		{"host name as bind address", func(o *Options) { o.BindAddress = "localhost" }, `--bind-address "localhost" is not an IP address`},
		{"port zero", func(o *Options) { o.Port = 0 }, "--port 0 is not between 1 and 65535"},
		{"port too high", func(o *Options) { o.Port = 70000 }, "--port 70000 is not between 1 and 65535"},
		{"overhead of everything", func(o *Options) { o.FilesystemOverhead = 1 }, "--filesystem-overhead: filesystem overhead 1 must be at least 0 and less than 1"},
		{"negative overhead", func(o *Options) { o.FilesystemOverhead = -0.1 }, "--filesystem-overhead: filesystem overhead -0.1 must be at least 0 and less than 1"},
		{"small clone check limits", func(o *Options) { o.CloneCheckQPS, o.CloneCheckBurst = 0.5, 1 }, ""},
		{"zero clone check QPS", func(o *Options) { o.CloneCheckQPS = 0 },
			"--clone-check-qps must be positive, not 0: the clone checks' client is always limited"},
		{"negative clone check QPS (client-go: unlimited)", func(o *Options) { o.CloneCheckQPS = -1 },
			"--clone-check-qps must be positive, not -1: the clone checks' client is always limited"},
		{"zero clone check burst", func(o *Options) { o.CloneCheckBurst = 0 }, "--clone-check-burst must be positive, not 0"},
		{"negative clone check burst", func(o *Options) { o.CloneCheckBurst = -3 }, "--clone-check-burst must be positive, not -3"},
		{"zero clone checks in flight per user", func(o *Options) { o.CloneCheckMaxInFlightPerUser = 0 },
			"--clone-check-max-in-flight-per-user must be positive, not 0: one tenant's clones must not hold up everyone's checks"},
		{"negative clone checks in flight per user", func(o *Options) { o.CloneCheckMaxInFlightPerUser = -2 },
			"--clone-check-max-in-flight-per-user must be positive, not -2: one tenant's clones must not hold up everyone's checks"},
		{"metrics off", func(o *Options) { o.MetricsBindAddress = "" }, ""},
		{"metrics on every address", func(o *Options) { o.MetricsBindAddress = ":8080" }, ""},
		{"metrics without a port", func(o *Options) { o.MetricsBindAddress = "127.0.0.1" },
			"--metrics-bind-address: address 127.0.0.1: missing port in address"},
		{"metrics on a host name", func(o *Options) { o.MetricsBindAddress = "localhost:8080" },
			`--metrics-bind-address: "localhost" is not an IP address`},
		{"metrics on port zero", func(o *Options) { o.MetricsBindAddress = "127.0.0.1:0" },
			`--metrics-bind-address: port "0" is not between 1 and 65535`},
		{"zero read header timeout", func(o *Options) { o.ReadHeaderTimeout = 0 },
			"--read-header-timeout must be positive, not 0s: without it a slow client holds a connection for ever"},
		{"negative idle timeout", func(o *Options) { o.IdleTimeout = -time.Second },
			"--idle-timeout must be positive, not -1s: without it a slow client holds a connection for ever"},
		{"write timeout shorter than read timeout", func(o *Options) { o.ReadTimeout, o.WriteTimeout = 10*time.Second, 5*time.Second },
			"--write-timeout 5s is shorter than --read-timeout 10s: a request read in time could not be answered"},
		{"no requests in flight", func(o *Options) { o.MaxRequestsInFlight = 0 }, "--max-requests-inflight must be positive, not 0"},
		{"no wait for a slot", func(o *Options) { o.MaxRequestsInFlightWait = 0 }, ""},
		{"negative wait for a slot", func(o *Options) { o.MaxRequestsInFlightWait = -time.Second },
			"--max-requests-inflight-wait must not be negative, not -1s"},
		{"no client CA", func(o *Options) { o.ClientCAFile = "" },
			"--client-ca-file is required: without it any pod could ask the webhook which claims exist and who may clone them " +
				"(--insecure-allow-any-client serves any client, where nothing else can reach the webhook)"},
		{"any client, asked for", func(o *Options) { o.ClientCAFile, o.InsecureAllowAnyClient = "", true }, ""},
		{"a client CA and any client", func(o *Options) { o.InsecureAllowAnyClient = true },
			"--client-ca-file and --insecure-allow-any-client contradict each other"},
		{"client names without a CA", func(o *Options) {
			o.ClientCAFile, o.InsecureAllowAnyClient, o.AllowedClientNames = "", true, []string{"kube-apiserver"}
		}, "--allowed-client-names needs --client-ca-file"},
		{"health checks off", func(o *Options) { o.HealthBindAddress = "" }, ""},
		{"health checks on a host name", func(o *Options) { o.HealthBindAddress = "localhost:8081" },
			`--health-bind-address: "localhost" is not an IP address`},
		{"every error at once", func(o *Options) { o.TLSCertFile, o.Port = "", 0 },
			"--tls-cert-file and --tls-private-key-file are required: the API server calls webhooks over HTTPS only\n--port 0 is not between 1 and 65535"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := valid()
			tt.modify(o)
			err := o.Validate()
			if tt.wantErr == "" {
				assert.NilError(t, err)
				return
			}
			assert.Error(t, err, tt.wantErr)
		})
	}
}
