package podmetrics

import (
	"testing"

	"gotest.tools/v3/assert"
)

const exposition = `# HELP rest_client_rate_limiter_duration_seconds [ALPHA] Client side rate limiter latency in seconds. Broken down by verb, and host.
# TYPE rest_client_rate_limiter_duration_seconds histogram
rest_client_rate_limiter_duration_seconds_bucket{host="10.0.0.1:443",verb="GET",le="0.005"} 7
rest_client_rate_limiter_duration_seconds_bucket{host="10.0.0.1:443",verb="GET",le="+Inf"} 7
rest_client_rate_limiter_duration_seconds_sum{host="10.0.0.1:443",verb="GET"} 0.0001
rest_client_rate_limiter_duration_seconds_count{host="10.0.0.1:443",verb="GET"} 7
rest_client_rate_limiter_duration_seconds_bucket{host="10.0.0.1:443",verb="POST",le="0.005"} 10
rest_client_rate_limiter_duration_seconds_bucket{host="10.0.0.1:443",verb="POST",le="0.025"} 10
rest_client_rate_limiter_duration_seconds_bucket{host="10.0.0.1:443",verb="POST",le="+Inf"} 200
rest_client_rate_limiter_duration_seconds_sum{host="10.0.0.1:443",verb="POST"} 3800.5
rest_client_rate_limiter_duration_seconds_count{host="10.0.0.1:443",verb="POST"} 200
rest_client_rate_limiter_duration_seconds_bucket{host="kube:6443",verb="POST",le="0.005"} 3
rest_client_rate_limiter_duration_seconds_sum{host="kube:6443",verb="POST"} 0.5
rest_client_rate_limiter_duration_seconds_count{host="kube:6443",verb="POST"} 3
go_goroutines 42
`

// As client-go's default limiter left 200 clone checks: 10 went at once,
// the others waited.
func TestRateLimiterWaitSumsTheVerbOverHosts(t *testing.T) {
	assert.DeepEqual(t, RateLimiterWait(exposition, "POST"), LimiterWait{Requests: 203, Waited: 190, Seconds: 3801})
	assert.DeepEqual(t, RateLimiterWait(exposition, "GET"), LimiterWait{Requests: 7, Waited: 0, Seconds: 0.0001})
	before := LimiterWait{Requests: 3, Waited: 0, Seconds: 0.5}
	assert.DeepEqual(t, LimiterWait{Requests: 203, Waited: 190, Seconds: 3801}.Sub(before), LimiterWait{Requests: 200, Waited: 190, Seconds: 3800.5})
}

// Before any rate-limited request there is no series: nothing waited.
func TestRateLimiterWaitWithoutRequests(t *testing.T) {
	assert.DeepEqual(t, RateLimiterWait("go_goroutines 42\n", "POST"), LimiterWait{})
}

func TestCounterSumsItsLabelSets(t *testing.T) {
	metrics := "# TYPE hits counter\nhits{kind=\"a\"} 3\nhits{kind=\"b\"} 4\nhits_other 9\ngo_goroutines 42\n"
	assert.Equal(t, Counter(metrics, "hits"), 7.0)
	assert.Equal(t, Counter(metrics, "missing"), 0.0)
}

func TestCounterWithSumsTheMatchingLabelSets(t *testing.T) {
	metrics := "hits{schema=\"ours\",level=\"a\"} 3\nhits{schema=\"ours\",level=\"b\"} 4\nhits{schema=\"other\",level=\"a\"} 9\n"
	assert.Equal(t, CounterWith(metrics, "hits", map[string]string{"schema": "ours"}), 7.0)
	assert.Equal(t, CounterWith(metrics, "hits", map[string]string{"schema": "ours", "level": "a"}), 3.0)
	assert.Equal(t, CounterWith(metrics, "hits", map[string]string{"schema": "none"}), 0.0)
	assert.Equal(t, CounterWith(metrics, "hits", nil), 16.0)
}
