//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/datavolume/datavolume/e2e/internal/podmetrics"
	"github.com/datavolume/datavolume/pkg/cloneauth"
)

// Issue 15: the clone checks asked their SubjectAccessReviews through a
// client with client-go's default limit, 5 a second and 10 at once, so
// concurrent clone creates queued behind each other for seconds (and past
// the check's time limit, denied). These are correctness tests, not timing
// bars: every allowed create succeeds, and no clone check waits for its
// client's rate limiter, as client-go's own histogram
// rest_client_rate_limiter_duration_seconds counts it (a wait over its first
// bucket, 5 ms; a check whose wait would pass its time limit fails at once
// and counts as no wait, which the refused create shows). The SubjectAccessReviews are the servers' POSTs to
// kube-apiserver (with datavolume-apiserver's delegated authorization's,
// which are cached and limited apart). Each create clones a source of its
// own, so each is a review of its own: the servers reuse an answer for the
// very same review (requester, source, target namespace) for 10 s.

// concurrentClones is how many creates are sent at once: far above the old
// burst of 10.
const concurrentClones = 200

var virtualMachines = schema.GroupVersionResource{Group: "kubevirt.io", Version: "v1", Resource: "virtualmachines"}

// 200 cross-namespace clone DataVolumes at once, by a user RBAC allows to
// clone: all created with a grant, and datavolume-apiserver's clone checks
// never waited for their rate limiter.
func TestConcurrentCloneCreatesAreNotRateLimited(t *testing.T) {
	src, dst := namespace(t, "burst-src"), namespace(t, "burst-dst")
	createClaim(t, "disk", src, "1Gi", "", "")
	user := certUser(t, "burst-cloner")
	allowEdit(t, user, dst)
	allowCloneFrom(t, src, "clone-disk", userSubject(user.name), user, "disk")

	before := apiserverLimiterWait(t)
	client := unlimitedDynamicClient(t, user.kubeconfig)
	dataVolumes := client.Resource(schema.GroupVersionResource{Group: "cdi.kubevirt.io", Version: "v1beta1", Resource: "datavolumes"}).Namespace(dst)
	errs := createAtOnce(t, concurrentClones, func(ctx context.Context, i int) error {
		_, err := dataVolumes.Create(ctx, cloneObject(fmt.Sprintf("burst-%03d", i), src, fmt.Sprintf("disk-%03d", i)), metav1.CreateOptions{})
		return err
	})
	waited := apiserverLimiterWait(t).Sub(before)
	t.Logf("datavolume-apiserver, POST requests' rate limiter wait during the creates: %s", waited)
	assert.Check(t, len(errs) == 0, "%d of %d creates refused; the first: %v", len(errs), concurrentClones, firstErrors(errs))

	// Every clone was checked, allowed and granted.
	list, err := dataVolumes.List(testContext(t), metav1.ListOptions{})
	assert.NilError(t, err)
	granted := 0
	for _, dv := range list.Items {
		if dv.GetAnnotations()[cloneauth.GrantAnnotation] != "" {
			granted++
		}
	}
	assert.Check(t, is.Equal(granted, concurrentClones))

	assert.Check(t, waited.Requests >= concurrentClones, "%d POSTs went through a rate limiter, want one SubjectAccessReview per create at least", waited.Requests)
	assert.Check(t, is.Equal(waited.Waited, 0), "clone checks waited for their client's rate limiter: %s", waited)

	// Many clones of one source by one user (a CI job, a VM pool): one
	// review answers them all while it is fresh. Counted by the cache's
	// hits: the server's other POSTs (its delegated authorization of the
	// controller's writes to the 200 DataVolumes above) run meanwhile.
	hitsBefore := apiserverCloneCheckCacheHits(t)
	for i := range 20 {
		_, err := dataVolumes.Create(testContext(t), cloneObject(fmt.Sprintf("same-%02d", i), src, "disk"), metav1.CreateOptions{})
		assert.NilError(t, err)
	}
	asked := 20 - int(apiserverCloneCheckCacheHits(t)-hitsBefore)
	t.Logf("20 clones of one source asked %d SubjectAccessReviews", asked)
	assert.Check(t, asked >= 1 && asked <= 3, "%d reviews for 20 creates of one clone", asked)
}

// 200 VirtualMachines at once whose dataVolumeTemplate clones from another
// namespace, allowed for their service account: all created, and the
// webhook's clone checks never waited for their rate limiter.
func TestConcurrentVirtualMachineClonesAreNotRateLimited(t *testing.T) {
	src, dst := namespace(t, "vmburst-src"), namespace(t, "vmburst-dst")
	createClaim(t, "disk", src, "1Gi", "", "")
	account := impersonated("system:serviceaccount:" + dst + ":default")
	allowCloneFrom(t, src, "clone-disk", "- kind: ServiceAccount\n  name: default\n  namespace: "+dst+"\n", account, "disk")

	before := webhookLimiterWait(t)
	vms := unlimitedDynamicClient(t, cluster.Kubeconfig).Resource(virtualMachines).Namespace(dst)
	errs := createAtOnce(t, concurrentClones, func(ctx context.Context, i int) error {
		_, err := vms.Create(ctx, cloningVirtualMachine(fmt.Sprintf("burst-%03d", i), src, fmt.Sprintf("disk-%03d", i)), metav1.CreateOptions{})
		return err
	})
	waited := webhookLimiterWait(t).Sub(before)
	t.Logf("datavolume-webhook, POST requests' rate limiter wait during the creates: %s", waited)
	assert.Check(t, len(errs) == 0, "%d of %d creates refused; the first: %v", len(errs), concurrentClones, firstErrors(errs))
	assert.Check(t, waited.Requests >= concurrentClones, "%d POSTs went through a rate limiter, want one SubjectAccessReview per create", waited.Requests)
	assert.Check(t, is.Equal(waited.Waited, 0), "clone checks waited for their client's rate limiter: %s", waited)
}

// createAtOnce runs n creates, all at once, and returns their errors.
func createAtOnce(t *testing.T, n int, create func(ctx context.Context, i int) error) []error {
	t.Helper()
	ctx := testContext(t)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		errs  []error
		start = make(chan struct{})
	)
	for i := range n {
		wg.Go(func() {
			<-start
			if err := create(ctx, i); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	began := time.Now()
	close(start)
	wg.Wait()
	t.Logf("%d creates at once took %s", n, time.Since(began).Round(time.Millisecond))
	return errs
}

func firstErrors(errs []error) []error { return errs[:min(len(errs), 2)] }

// unlimitedDynamicClient has no client-side limit of its own, so that the
// servers' limits are what is tested.
func unlimitedDynamicClient(t *testing.T, kubeconfig string) *dynamic.DynamicClient {
	t.Helper()
	config, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	assert.NilError(t, err)
	config.QPS, config.Burst = -1, 0
	config.Timeout = time.Minute
	config.UserAgent = rest.DefaultKubernetesUserAgent() + " e2e-burst"
	client, err := dynamic.NewForConfig(config)
	assert.NilError(t, err)
	return client
}

func apiserverLimiterWait(t *testing.T) podmetrics.LimiterWait {
	t.Helper()
	metrics, err := podmetrics.APIServer(testContext(t), cluster)
	assert.NilError(t, err)
	return podmetrics.RateLimiterWait(metrics, "POST")
}

// apiserverCloneCheckCacheHits is how many of datavolume-apiserver's clone
// checks the review cache answered so far.
func apiserverCloneCheckCacheHits(t *testing.T) float64 {
	t.Helper()
	metrics, err := podmetrics.APIServer(testContext(t), cluster)
	assert.NilError(t, err)
	return podmetrics.Counter(metrics, "datavolume_clone_check_cache_hits_total")
}

func webhookLimiterWait(t *testing.T) podmetrics.LimiterWait {
	t.Helper()
	metrics, err := podmetrics.Webhook(testContext(t), cluster)
	assert.NilError(t, err)
	return podmetrics.RateLimiterWait(metrics, "POST")
}

// cloneObject is a DataVolume cloning sourceNamespace/claim.
func cloneObject(name, sourceNamespace, claim string) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "cdi.kubevirt.io/v1beta1",
		"kind":       "DataVolume",
		"metadata":   map[string]any{"name": name},
		"spec": map[string]any{
			"source": map[string]any{"pvc": map[string]any{"namespace": sourceNamespace, "name": claim}},
			"pvc": map[string]any{
				"accessModes": []any{"ReadWriteOnce"},
				"resources":   map[string]any{"requests": map[string]any{"storage": "1Gi"}},
			},
		},
	}}
}

// cloningVirtualMachine is a stopped VM whose one dataVolumeTemplate clones
// sourceNamespace/claim.
func cloningVirtualMachine(name, sourceNamespace, claim string) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "kubevirt.io/v1",
		"kind":       "VirtualMachine",
		"metadata":   map[string]any{"name": name},
		"spec": map[string]any{
			"running": false,
			"template": map[string]any{"spec": map[string]any{
				"domain":  map[string]any{"devices": map[string]any{"disks": []any{map[string]any{"name": "disk", "disk": map[string]any{"bus": "virtio"}}}}},
				"volumes": []any{map[string]any{"name": "disk", "dataVolume": map[string]any{"name": name + "-disk"}}},
			}},
			"dataVolumeTemplates": []any{map[string]any{
				"metadata": map[string]any{"name": name + "-disk"},
				"spec":     cloneObject("", sourceNamespace, claim).Object["spec"],
			}},
		},
	}}
}
