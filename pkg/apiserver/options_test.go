package apiserver

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/component-base/metrics/legacyregistry"

	"github.com/datavolume/datavolume/pkg/cloneauth"
)

func TestPriorityAndFairnessIsOffUnlessAsked(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want bool
	}{
		{nil, false},
		{[]string{"--enable-priority-and-fairness=true"}, true},
	} {
		o := NewOptions()
		fss := o.Flags()
		fs := fss.FlagSet("features")
		assert.NilError(t, fs.Parse(tc.args))
		assert.Equal(t, o.Recommended.Features.EnablePriorityAndFairness, tc.want, "args %q", tc.args)
	}
}

// The clone checks' limits are far above client-go's 5 per second and 10 at
// once, which had clone creates queue (issue 15), and finite.
func TestCloneCheckLimitDefaults(t *testing.T) {
	o := NewOptions()
	assert.Equal(t, o.CloneCheckQPS, DefaultCloneCheckQPS)
	assert.Equal(t, o.CloneCheckBurst, DefaultCloneCheckBurst)
	assert.Check(t, o.CloneCheckQPS >= 500, "QPS %v", o.CloneCheckQPS)
	assert.Check(t, o.CloneCheckBurst >= int(o.CloneCheckQPS), "burst %d below QPS %v", o.CloneCheckBurst, o.CloneCheckQPS)
}

func TestCloneCheckLimitFlags(t *testing.T) {
	o := NewOptions()
	assert.Equal(t, o.CloneCheckMaxInFlightPerUser, cloneauth.DefaultMaxInFlightPerRequester)
	fss := o.Flags()
	assert.NilError(t, fss.FlagSet("clone authorization").Parse([]string{
		"--clone-check-qps=50.5", "--clone-check-burst=75", "--clone-check-max-in-flight-per-user=3",
	}))
	assert.Equal(t, o.CloneCheckQPS, float32(50.5))
	assert.Equal(t, o.CloneCheckBurst, 75)
	assert.Equal(t, o.CloneCheckMaxInFlightPerUser, 3)
}

func TestOptionsValidate(t *testing.T) {
	valid := func() *Options {
		o := NewOptions()
		o.CloneGrantKeys = "/keys"
		o.Recommended.Etcd.StorageConfig.Transport.ServerList = []string{"http://127.0.0.1:2379"}
		return o
	}
	tests := []struct {
		name   string
		modify func(*Options)
		want   []string
	}{
		{"defaults", func(*Options) {}, nil},
		{"small limits", func(o *Options) { o.CloneCheckQPS, o.CloneCheckBurst = 0.5, 1 }, nil},
		{"no grant keys", func(o *Options) { o.CloneGrantKeys = "" }, []string{"--clone-grant-keys is required"}},
		{"zero QPS", func(o *Options) { o.CloneCheckQPS = 0 },
			[]string{"--clone-check-qps must be positive, not 0: the clone checks' client is always limited"}},
		{"negative QPS (client-go: unlimited)", func(o *Options) { o.CloneCheckQPS = -1 },
			[]string{"--clone-check-qps must be positive, not -1"}},
		{"zero burst", func(o *Options) { o.CloneCheckBurst = 0 }, []string{"--clone-check-burst must be positive, not 0"}},
		{"negative burst", func(o *Options) { o.CloneCheckBurst = -5 }, []string{"--clone-check-burst must be positive, not -5"}},
		{"zero in flight per user", func(o *Options) { o.CloneCheckMaxInFlightPerUser = 0 },
			[]string{"--clone-check-max-in-flight-per-user must be positive, not 0"}},
		{"negative in flight per user", func(o *Options) { o.CloneCheckMaxInFlightPerUser = -1 },
			[]string{"--clone-check-max-in-flight-per-user must be positive, not -1"}},
		{"every error at once", func(o *Options) {
			o.CloneCheckQPS, o.CloneCheckBurst, o.CloneCheckTimeout, o.CloneCheckMaxInFlightPerUser = 0, 0, 0, 0
		}, []string{"--clone-check-timeout must be positive", "--clone-check-qps must be positive", "--clone-check-burst must be positive",
			"--clone-check-max-in-flight-per-user must be positive"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := valid()
			tt.modify(o)
			err := o.Validate()
			if len(tt.want) == 0 {
				assert.NilError(t, err)
				return
			}
			assert.Assert(t, err != nil)
			for _, want := range tt.want {
				assert.Check(t, is.Contains(err.Error(), want))
			}
		})
	}
}

// The clone checks' client carries their limits and its own user agent,
// and leaves the server's shared configuration as it was.
func TestCloneCheckClientConfig(t *testing.T) {
	base := &rest.Config{Host: "https://kube.example:6443", QPS: 5, Burst: 10, UserAgent: "datavolume-apiserver/v1"}
	o := NewOptions()
	o.CloneCheckQPS, o.CloneCheckBurst = 321, 654

	config := o.cloneCheckClientConfig(base)
	assert.Equal(t, config.Host, base.Host)
	assert.Equal(t, config.QPS, float32(321))
	assert.Equal(t, config.Burst, 654)
	assert.Equal(t, config.UserAgent, "datavolume-apiserver/v1 clone-check")
	assert.Equal(t, config.ContentType, "application/vnd.kubernetes.protobuf", "SubjectAccessReviews cost less in protobuf")
	assert.Equal(t, base.QPS, float32(5), "the shared configuration was changed")
	assert.Equal(t, base.UserAgent, "datavolume-apiserver/v1")

	// What the clone checks' SubjectAccessReviews go through.
	client, err := kubernetes.NewForConfig(config)
	assert.NilError(t, err)
	limiter := client.AuthorizationV1().RESTClient().GetRateLimiter()
	assert.Assert(t, limiter != nil)
	assert.Equal(t, limiter.QPS(), float32(321))

	// Without a user agent of its own, client-go's default is named.
	config = o.cloneCheckClientConfig(&rest.Config{Host: base.Host})
	assert.Assert(t, strings.HasSuffix(config.UserAgent, " clone-check"), config.UserAgent)
	assert.Assert(t, len(config.UserAgent) > len(" clone-check"))
}

// The server's /metrics (the legacy registry) shows how long the clone
// checks' SubjectAccessReviews waited for their client's rate limiter.
func TestCloneCheckRateLimiterWaitIsAMetric(t *testing.T) {
	endpoint := &sarEndpoint{t: t, answer: answerBy(map[string]string{"datavolumes": rbacReason})}
	server := httptest.NewServer(endpoint)
	defer server.Close()
	client, err := kubernetes.NewForConfig(NewOptions().cloneCheckClientConfig(&rest.Config{Host: server.URL}))
	assert.NilError(t, err)
	_, err = client.AuthorizationV1().SubjectAccessReviews().Create(context.Background(), &authorizationv1.SubjectAccessReview{
		Spec: authorizationv1.SubjectAccessReviewSpec{User: "alice", ResourceAttributes: &authorizationv1.ResourceAttributes{Resource: "datavolumes"}},
	}, metav1.CreateOptions{})
	assert.NilError(t, err)

	families, err := legacyregistry.DefaultGatherer.Gather()
	assert.NilError(t, err)
	host := strings.TrimPrefix(server.URL, "http://")
	var observed uint64
	for _, family := range families {
		if family.GetName() != "rest_client_rate_limiter_duration_seconds" {
			continue
		}
		for _, m := range family.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["host"] == host && labels["verb"] == "POST" {
				observed += m.GetHistogram().GetSampleCount()
			}
		}
	}
	assert.Equal(t, observed, uint64(1))
}
