package cloneauth

import (
	"encoding/json"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	"k8s.io/apimachinery/pkg/util/cache"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/component-base/metrics"
	"k8s.io/component-base/metrics/legacyregistry"
)

// DefaultCacheSize bounds how many SubjectAccessReview answers a cache holds.
const DefaultCacheSize = 10000

// Defaults of the admission checks' cache (datavolume-apiserver and the
// webhook). kube-apiserver's webhook authorizer caches allowed answers for
// 5 minutes and denied ones for 30 seconds; ours are far shorter, and a
// cached "allowed" moves no data by itself: the controller asks again,
// uncached, right before it does.
const (
	DefaultCacheAllowedTTL = 10 * time.Second
	DefaultCacheDeniedTTL  = 2 * time.Second
)

// reviewCache remembers SubjectAccessReview answers for a short time, so a
// burst of clones by one requester from one source (a CI job, a VM pool)
// costs one review, not one per create. Errors are never cached.
type reviewCache struct {
	answers               *cache.LRUExpireCache
	allowedTTL, deniedTTL time.Duration
}

// WithCache caches answers: allowed ones for allowedTTL, denied ones for
// deniedTTL; a non-positive TTL caches none of that kind. For admission
// checks only: a check that guards moving data must ask every time.
func WithCache(allowedTTL, deniedTTL time.Duration) Option {
	return func(a *Authorizer) {
		if allowedTTL <= 0 && deniedTTL <= 0 {
			a.cache = nil
			return
		}
		a.cache = &reviewCache{answers: cache.NewLRUExpireCache(DefaultCacheSize), allowedTTL: allowedTTL, deniedTTL: deniedTTL}
	}
}

// key is the whole review asked: user, UID, groups, extra and attributes.
// JSON orders map keys, so equal reviews have equal keys.
func (c *reviewCache) key(u user.Info, attributes authorizationv1.ResourceAttributes) (string, bool) {
	spec, err := json.Marshal(subjectAccessReview(u, attributes).Spec)
	if err != nil {
		return "", false
	}
	return string(spec), true
}

func (c *reviewCache) get(key string) (*authorizationv1.SubjectAccessReviewStatus, bool) {
	got, ok := c.answers.Get(key)
	if !ok {
		return nil, false
	}
	status := got.(authorizationv1.SubjectAccessReviewStatus)
	return &status, true
}

func (c *reviewCache) add(key string, status authorizationv1.SubjectAccessReviewStatus) {
	ttl := c.deniedTTL
	if status.Allowed {
		ttl = c.allowedTTL
	}
	if ttl > 0 {
		c.answers.Add(key, status, ttl)
	}
}

// cacheHits counts reviews answered from the cache.
var cacheHits = metrics.NewCounter(&metrics.CounterOpts{
	Name:           "datavolume_clone_check_cache_hits_total",
	Help:           "Clone checks' SubjectAccessReviews answered from the short-lived cache instead of kube-apiserver.",
	StabilityLevel: metrics.ALPHA,
})

func init() {
	legacyregistry.MustRegister(cacheHits)
}
