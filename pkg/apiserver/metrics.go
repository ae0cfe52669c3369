package apiserver

// The generic server's /metrics serves the legacy registry; this import adds
// client-go's rest_client_* metrics to it, among them
// rest_client_rate_limiter_duration_seconds, the time requests waited for
// their client's rate limiter (verb and host labels): the clone checks' wait
// shows there as POSTs to kube-apiserver.
import _ "k8s.io/component-base/metrics/prometheus/restclient" // rest_client_* metrics
