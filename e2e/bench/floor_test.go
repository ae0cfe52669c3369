//go:build e2e

package bench

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
)

// floorLabel marks the namespace whose bench.example.com VirtualMachines
// a do-nothing webhook admits: the "floor" path, the same objects and audit
// rules as "no-webhook", plus one webhook call that costs its server nothing.
const (
	floorLabel  = "bench.datavolume.io/floor"
	floorConfig = "validatingwebhookconfiguration/bench-floor"
)

// floorWebhook is an HTTPS server on loopback that allows every review at
// once, registered with kube-apiserver for the floor path's namespace. What
// it adds to a create is what kube-apiserver spends on calling any webhook
// on this machine; what clone.cdi.kubevirt.io adds beyond it is ours.
type floorWebhook struct {
	server *httptest.Server
	calls  atomic.Int64
}

func startFloorWebhook(ctx context.Context, ns string) (_ *floorWebhook, err error) {
	f := &floorWebhook{}
	f.server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.calls.Add(1)
		var review struct {
			Request struct {
				UID string `json:"uid"`
			} `json:"request"`
		}
		body, _ := io.ReadAll(r.Body)
		_ = json.Unmarshal(body, &review)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":%q,"allowed":true}}`, review.Request.UID)
	}))
	defer func() {
		if err != nil {
			f.server.Close()
		}
	}()
	caBundle := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: f.server.Certificate().Raw})
	config := map[string]any{
		"apiVersion": "admissionregistration.k8s.io/v1",
		"kind":       "ValidatingWebhookConfiguration",
		"metadata":   map[string]any{"name": "bench-floor"},
		"webhooks": []any{map[string]any{
			"name":                    "floor.bench.example.com",
			"admissionReviewVersions": []any{"v1"},
			"sideEffects":             "None",
			"failurePolicy":           "Fail",
			"timeoutSeconds":          10,
			"clientConfig":            map[string]any{"url": f.server.URL + "/validate", "caBundle": caBundle},
			"namespaceSelector":       map[string]any{"matchLabels": map[string]any{floorLabel: "true"}},
			"rules": []any{map[string]any{
				"apiGroups": []any{benchVMs.Group}, "apiVersions": []any{benchVMs.Version},
				"resources": []any{benchVMs.Resource}, "operations": []any{"CREATE"}, "scope": "Namespaced",
			}},
		}},
	}
	manifest, err := json.Marshal(config)
	if err != nil {
		return nil, err
	}
	if _, err = cluster.Kubectl(ctx, "", "label", "namespace", ns, floorLabel+"=true"); err != nil {
		return nil, err
	}
	// apply: a configuration left by a killed run is taken over.
	if _, err = cluster.Kubectl(ctx, string(manifest), "apply", "-f", "-"); err != nil {
		return nil, err
	}
	return f, nil
}

// waitCalled waits until kube-apiserver's informer has the configuration
// and a dry-run create on the floor path reaches the server.
func (f *floorWebhook) waitCalled(ctx context.Context, client dynamic.Interface, floor *path) error {
	before := f.calls.Load()
	dryRun := metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}
	var last error
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		_, last = client.Resource(floor.resource).Namespace(floor.ns).Create(ctx, floor.newObject("bench-probe"), dryRun)
		return last == nil && f.calls.Load() > before, nil
	})
	if err != nil {
		return fmt.Errorf("%s path: the do-nothing webhook is not called (last answer: %v): %w", floor.name, last, err)
	}
	return nil
}

func (f *floorWebhook) stop(ctx context.Context) {
	_, _ = cluster.Kubectl(ctx, "", "delete", floorConfig, "--ignore-not-found")
	f.server.Close()
}
