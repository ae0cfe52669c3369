package server

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/go-logr/logr/testr"
	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// The clone checks' client carries their limits and its own user agent,
// and leaves the informers' configuration as it was.
func TestCloneCheckClientConfig(t *testing.T) {
	base := &rest.Config{Host: "https://10.0.0.1:443", QPS: 5, Burst: 10, UserAgent: "datavolume-webhook/v1"}
	o := NewOptions()
	o.CloneCheckQPS, o.CloneCheckBurst = 321, 654

	config := o.cloneCheckClientConfig(base)
	assert.Equal(t, config.Host, base.Host)
	assert.Equal(t, config.QPS, float32(321))
	assert.Equal(t, config.Burst, 654)
	assert.Equal(t, config.UserAgent, "datavolume-webhook/v1 clone-check")
	assert.Equal(t, base.QPS, float32(5), "the informers' configuration was changed")

	client, err := kubernetes.NewForConfig(config)
	assert.NilError(t, err)
	limiter := client.AuthorizationV1().RESTClient().GetRateLimiter()
	assert.Assert(t, limiter != nil)
	assert.Equal(t, limiter.QPS(), float32(321))
}

// /metrics shows how long the clone checks' SubjectAccessReviews waited for
// their client's rate limiter.
func TestMetricsShowTheCloneChecksRateLimiterWait(t *testing.T) {
	kube := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var review authorizationv1.SubjectAccessReview
		body, _ := io.ReadAll(r.Body)
		_ = json.Unmarshal(body, &review)
		review.APIVersion, review.Kind = "authorization.k8s.io/v1", "SubjectAccessReview"
		review.Status.Allowed = true
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(&review)
	}))
	defer kube.Close()
	o := NewOptions()
	client, err := kubernetes.NewForConfig(o.cloneCheckClientConfig(&rest.Config{Host: kube.URL, ContentConfig: rest.ContentConfig{ContentType: "application/json"}}))
	assert.NilError(t, err)
	_, err = client.AuthorizationV1().SubjectAccessReviews().Create(context.Background(), &authorizationv1.SubjectAccessReview{
		Spec: authorizationv1.SubjectAccessReviewSpec{User: "alice", ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: "create"}},
	}, metav1.CreateOptions{})
	assert.NilError(t, err)

	address := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
	stop, err := servePlain(context.Background(), testr.New(t), "metrics", address, metricsRoutes())
	assert.NilError(t, err)
	defer stop()
	resp, err := http.Get("http://" + address + "/metrics")
	assert.NilError(t, err)
	defer resp.Body.Close()
	text, err := io.ReadAll(resp.Body)
	assert.NilError(t, err)
	assert.Equal(t, resp.StatusCode, http.StatusOK)
	host := strings.TrimPrefix(kube.URL, "http://")
	assert.Check(t, is.Contains(string(text), `rest_client_rate_limiter_duration_seconds_count{host="`+host+`",verb="POST"} 1`))
}
