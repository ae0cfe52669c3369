//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/datavolume/datavolume/e2e/internal/podmetrics"
	"github.com/datavolume/datavolume/pkg/cloneauth"
)

// Issue 18: a user who may create DataVolumes only in their own namespace
// sends a flood of refused cross-namespace clones, each from a source of its
// own (so no cached denial absorbs them). Meanwhile another user, whom RBAC
// allows, clones. Outcomes, not timings: the other user's clones are all
// admitted with a grant; every one of the flood's creates is refused by a
// decision (403, the permission is missing) or for load (429 with
// Retry-After), never by an error, a failed check or a timeout.

const (
	floodCreates = 300
	fairClones   = 5
)

var dataVolumesV1beta1 = schema.GroupVersionResource{Group: "cdi.kubevirt.io", Version: "v1beta1", Resource: "datavolumes"}

func TestOneUsersFloodOfRefusedClonesDoesNotStarveAnothersClones(t *testing.T) {
	src := namespace(t, "flood-src")
	floodNS, fairNS := namespace(t, "flood-a"), namespace(t, "flood-b")
	flooder := certUser(t, "clone-flooder")
	allowEdit(t, flooder, floodNS)
	fair := certUser(t, "fair-cloner")
	allowEdit(t, fair, fairNS)
	allowCloneFrom(t, src, "clone-any", userSubject(fair.name), fair, "fair-0")
	assert.Assert(t, !canCloneBySource(t, flooder, src, "flood-000"), "the flooder may clone")
	assert.Assert(t, !canI(t, flooder, "create", "pods", "-n", src), "the flooder may create pods in the source namespace")

	throttledBefore := apiserverCloneCheckThrottled(t)
	dispatchedBefore := cloneCheckFlowDispatched(t)

	// The flood: every create sent at once, each answer recorded as it
	// came, with no client retrying on the flooder's behalf.
	flood := rawCreatorFor(t, flooder.kubeconfig)
	outcomes := make([]createOutcome, floodCreates)
	var (
		flooding, begun sync.WaitGroup
		answered        atomic.Int32
		start           = make(chan struct{})
	)
	begun.Add(floodCreates)
	ctx := testContext(t)
	for i := range floodCreates {
		flooding.Go(func() {
			<-start
			begun.Done()
			name := fmt.Sprintf("flood-%03d", i)
			outcomes[i] = flood.create(ctx, floodNS, cloneObject(name, src, name))
			answered.Add(1)
		})
	}
	close(start)
	begun.Wait()

	// The other user's clones, while the flood is in flight, through
	// client-go as kubectl would send them.
	answeredAtFairStart := answered.Load()
	fairDataVolumes := unlimitedDynamicClient(t, fair.kubeconfig).Resource(dataVolumesV1beta1).Namespace(fairNS)
	var (
		mu      sync.Mutex
		granted []string
	)
	fairErrs := createAtOnce(t, fairClones, func(ctx context.Context, i int) error {
		name := fmt.Sprintf("fair-%d", i)
		created, err := fairDataVolumes.Create(ctx, cloneObject(name, src, name), metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("creating %s: %w", name, err)
		}
		if created.GetAnnotations()[cloneauth.GrantAnnotation] == "" {
			return fmt.Errorf("%s was created without a grant", name)
		}
		mu.Lock()
		granted = append(granted, name)
		mu.Unlock()
		return nil
	})
	answeredAtFairEnd := answered.Load()
	flooding.Wait()

	t.Logf("%s's %d clones began with %d of the flood's %d creates answered, and ended with %d answered",
		fair.name, fairClones, answeredAtFairStart, floodCreates, answeredAtFairEnd)
	assert.Check(t, answeredAtFairStart < floodCreates, "the flood was over before the other user's clones began: no overlap, nothing tested")

	assert.Check(t, len(fairErrs) == 0, "%d of %s's %d clones refused; the first: %v", len(fairErrs), fair.name, fairClones, firstErrors(fairErrs))
	assert.Check(t, is.Len(granted, fairClones))

	codes := map[int]int{}
	var denied, throttledHere int
	for i, o := range outcomes {
		codes[o.code]++
		switch {
		case o.err != nil:
			t.Errorf("flood create %d: no answer: %v", i, o.err)
		case o.code == http.StatusForbidden && strings.Contains(o.message, "may not clone"):
			denied++
		case o.code == http.StatusForbidden:
			t.Errorf("flood create %d: 403 that is not a decision (a failed check?): %s", i, o.message)
		case o.code == http.StatusTooManyRequests:
			assert.Check(t, o.retryAfter != "", "flood create %d: 429 without Retry-After: %s", i, o.message)
			if strings.Contains(o.message, "the most allowed per requester") {
				throttledHere++
			}
		default:
			t.Errorf("flood create %d: HTTP %d: %s", i, o.code, o.message)
		}
	}
	t.Logf("the flood's %d creates: HTTP status → count %v (%d refused by datavolume-apiserver's per-requester bound)",
		floodCreates, codes, throttledHere)

	// Nothing of the flood was stored.
	stored, err := unlimitedDynamicClient(t, cluster.Kubeconfig).Resource(dataVolumesV1beta1).Namespace(floodNS).List(testContext(t), metav1.ListOptions{})
	assert.NilError(t, err)
	assert.Check(t, is.Len(stored.Items, 0))

	// Each refusal for load is counted once, and only the flooder's.
	throttled := apiserverCloneCheckThrottled(t) - throttledBefore
	assert.Check(t, is.Equal(int(throttled), throttledHere), "datavolume_clone_check_throttled_total grew by %v", throttled)

	// Each refused clone asked kube-apiserver a review of its own source, and
	// kube-apiserver served the reviews under the FlowSchema of
	// artifacts/deploy/flowcontrol.yaml, not with every service account's.
	dispatched := cloneCheckFlowDispatched(t) - dispatchedBefore
	t.Logf("kube-apiserver dispatched %v requests under FlowSchema datavolume-clone-checks meanwhile", dispatched)
	assert.Check(t, int(dispatched) >= denied+fairClones, "%v requests under FlowSchema datavolume-clone-checks, want at least one review per clone checked (%d)", dispatched, denied+fairClones)
}

// createOutcome is the answer to one create: its HTTP status, Retry-After
// and Status message, or the error of a request that got none.
type createOutcome struct {
	code       int
	retryAfter string
	message    string
	err        error
}

// rawCreator POSTs objects to kube-apiserver as one user, over plain HTTP:
// no client-side limit and no retries, so that each answer is what the
// servers decided.
type rawCreator struct {
	host   string
	client *http.Client
}

func rawCreatorFor(t *testing.T, kubeconfig string) *rawCreator {
	t.Helper()
	config, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	assert.NilError(t, err)
	config.Timeout = time.Minute
	client, err := rest.HTTPClientFor(config)
	assert.NilError(t, err)
	return &rawCreator{host: config.Host, client: client}
}

func (c *rawCreator) create(ctx context.Context, namespace string, obj *unstructured.Unstructured) createOutcome {
	body, err := json.Marshal(obj.Object)
	if err != nil {
		return createOutcome{err: err}
	}
	url := fmt.Sprintf("%s/apis/%s/%s/namespaces/%s/%s", c.host, dataVolumesV1beta1.Group, dataVolumesV1beta1.Version, namespace, dataVolumesV1beta1.Resource)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return createOutcome{err: err}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := c.client.Do(req)
	if err != nil {
		return createOutcome{err: err}
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return createOutcome{code: resp.StatusCode, err: fmt.Errorf("reading the answer: %w", err)}
	}
	outcome := createOutcome{code: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After"), message: string(raw)}
	var status metav1.Status
	if json.Unmarshal(raw, &status) == nil && status.Message != "" {
		outcome.message = status.Message
	}
	return outcome
}

// apiserverCloneCheckThrottled is how many of datavolume-apiserver's clone
// checks the per-requester bound refused so far.
func apiserverCloneCheckThrottled(t *testing.T) float64 {
	t.Helper()
	metrics, err := podmetrics.APIServer(testContext(t), cluster)
	assert.NilError(t, err)
	return podmetrics.Counter(metrics, "datavolume_clone_check_throttled_total")
}

// cloneCheckFlowDispatched is how many requests kube-apiserver has served
// under the FlowSchema of the clone checks.
func cloneCheckFlowDispatched(t *testing.T) float64 {
	t.Helper()
	metrics := kubectl(t, "get", "--raw", "/metrics")
	return podmetrics.CounterWith(metrics, "apiserver_flowcontrol_dispatched_requests_total",
		map[string]string{"flow_schema": "datavolume-clone-checks", "priority_level": "datavolume-clone-checks"})
}
