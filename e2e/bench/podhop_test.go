//go:build e2e

package bench

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
)

// The "pod-hop" path: VirtualMachines without dataVolumeTemplates, which a
// second configuration sends to datavolume-webhook's VirtualMachine endpoint
// anyway, where they have nothing to check. kube-apiserver calls it exactly
// as it calls clone.cdi.kubevirt.io (the same Service, path, CA and client
// certificate: the same cached client and connections, over the pod
// network), so what it adds to "no-templates" is what any webhook deployed
// like ours costs: the fair floor of "cross-ns-templates".
const (
	podHopLabel   = "bench.datavolume.io/pod-hop"
	podHopConfig  = "validatingwebhookconfiguration/bench-pod-hop"
	podHopWebhook = "hop.bench.example.com"
)

// startPodHop registers the pod-hop configuration for namespace ns and
// returns a function that removes it.
func startPodHop(ctx context.Context, ns string) (stop func(context.Context), err error) {
	ca, err := cluster.Kubectl(ctx, "", "get", vmWebhookConfig, "-o",
		`jsonpath={.webhooks[?(@.name=="`+vmWebhook+`")].clientConfig.caBundle}`)
	if err != nil {
		return nil, err
	}
	caBundle, err := base64.StdEncoding.DecodeString(strings.TrimSpace(ca))
	if err != nil || len(caBundle) == 0 {
		return nil, fmt.Errorf("reading the caBundle of %s: %q: %v", vmWebhook, ca, err)
	}
	config := map[string]any{
		"apiVersion": "admissionregistration.k8s.io/v1",
		"kind":       "ValidatingWebhookConfiguration",
		"metadata":   map[string]any{"name": "bench-pod-hop"},
		"webhooks": []any{map[string]any{
			"name":                    podHopWebhook,
			"admissionReviewVersions": []any{"v1"},
			"sideEffects":             "None",
			"failurePolicy":           "Fail",
			"timeoutSeconds":          10,
			"clientConfig": map[string]any{
				"service":  map[string]any{"name": "datavolume-webhook", "namespace": "datavolume-system", "path": "/validate-virtualmachines", "port": 443},
				"caBundle": caBundle,
			},
			"namespaceSelector": map[string]any{"matchLabels": map[string]any{podHopLabel: "true"}},
			"rules": []any{map[string]any{
				"apiGroups": []any{kubevirtVMs.Group}, "apiVersions": []any{kubevirtVMs.Version},
				"resources": []any{kubevirtVMs.Resource}, "operations": []any{"CREATE"}, "scope": "Namespaced",
			}},
		}},
	}
	manifest, err := json.Marshal(config)
	if err != nil {
		return nil, err
	}
	if _, err := cluster.Kubectl(ctx, "", "label", "namespace", ns, podHopLabel+"=true"); err != nil {
		return nil, err
	}
	if _, err := cluster.Kubectl(ctx, string(manifest), "apply", "-f", "-"); err != nil {
		return nil, err
	}
	return func(ctx context.Context) {
		_, _ = cluster.Kubectl(ctx, "", "delete", podHopConfig, "--ignore-not-found")
	}, nil
}

// waitPodHopCalled waits until dry-run creates on p reach the pod-hop
// webhook, by kube-apiserver's count of its calls.
func waitPodHopCalled(ctx context.Context, client dynamic.Interface, p *path) error {
	before, err := webhookCalls(ctx, podHopWebhook)
	if err != nil {
		return err
	}
	dryRun := metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}
	var last error
	err = wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		if _, last = client.Resource(p.resource).Namespace(p.ns).Create(ctx, p.newObject("bench-probe"), dryRun); last != nil {
			return false, nil
		}
		calls, err := webhookCalls(ctx, podHopWebhook)
		last = err
		return err == nil && calls > before, nil
	})
	if err != nil {
		return fmt.Errorf("%s path: %s is not called (last answer: %v): %w", p.name, podHopWebhook, last, err)
	}
	return nil
}

// webhookCalls is kube-apiserver's count of its calls to the webhook name.
func webhookCalls(ctx context.Context, name string) (float64, error) {
	metrics, err := cluster.Kubectl(ctx, "", "get", "--raw", "/metrics")
	if err != nil {
		return 0, err
	}
	var total float64
	for line := range strings.Lines(metrics) {
		if !strings.HasPrefix(line, "apiserver_admission_webhook_admission_duration_seconds_count{") || !strings.Contains(line, `name="`+name+`"`) {
			continue
		}
		fields := strings.Fields(line)
		if v, err := strconv.ParseFloat(fields[len(fields)-1], 64); err == nil {
			total += v
		}
	}
	return total, nil
}
