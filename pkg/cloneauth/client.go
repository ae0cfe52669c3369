package cloneauth

import (
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
)

// UserAgentSuffix tells the clone checks' requests apart from their server's
// other requests in kube-apiserver's audit log.
const UserAgentSuffix = " clone-check"

// ClientConfig is base for the clone checks' own client: its own rate
// limiter (qps, burst), so nothing else the server asks (informers,
// delegated authorization) shares it, and a user agent of its own. Unless
// base names a content type, it speaks protobuf, which costs kube-apiserver
// and the caller less per SubjectAccessReview than JSON.
func ClientConfig(base *rest.Config, qps float32, burst int) *rest.Config {
	config := rest.CopyConfig(base)
	config.QPS, config.Burst = qps, burst
	config.RateLimiter = nil // built from QPS and Burst, for this client alone
	if config.ContentType == "" {
		config.ContentType = runtime.ContentTypeProtobuf
		config.AcceptContentTypes = runtime.ContentTypeProtobuf + "," + runtime.ContentTypeJSON
	}
	userAgent := config.UserAgent
	if userAgent == "" {
		userAgent = rest.DefaultKubernetesUserAgent()
	}
	config.UserAgent = userAgent + UserAgentSuffix
	return config
}
