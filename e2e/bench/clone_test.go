//go:build e2e

package bench

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/datavolume/datavolume/e2e/internal/podmetrics"
)

// The clone benchmarks measure the product's main path: a DataVolume that
// clones a claim of another namespace, which RBAC allows (the seed's
// shape), and the VirtualMachines whose dataVolumeTemplates do.

var (
	cdiDataVolumes   = schema.GroupVersionResource{Group: "cdi.kubevirt.io", Version: "v1beta1", Resource: "datavolumes"}
	benchDataVolumes = schema.GroupVersionResource{Group: "bench.example.com", Version: "v1beta1", Resource: "datavolumes"}
)

const (
	cloneUser   = "bench-cloner"
	cloneClaim  = "bench-source"
	cloneRole   = "bench-cloner"
	cloneSource = `{"apiVersion":"v1","kind":"PersistentVolumeClaim","metadata":{"name":"` + cloneClaim + `"},"spec":{"accessModes":["ReadWriteOnce"],"resources":{"requests":{"storage":"1Gi"}}}}`
)

// cloneRoleManifest is what the bench user may do in each namespace it
// creates in, and, bound in the source namespace, the permission to clone
// from it (the seed's datavolumes/source).
const cloneRoleManifest = `apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: ` + cloneRole + `
rules:
- apiGroups: ["cdi.kubevirt.io", "bench.example.com"]
  resources: ["datavolumes"]
  verbs: ["create"]
- apiGroups: ["cdi.kubevirt.io"]
  resources: ["datavolumes/source"]
  verbs: ["create"]
`

// BenchmarkCloneCreate creates cross-namespace clone DataVolumes, 8 clients,
// in interleaved rounds, on three paths, as a user whom RBAC allows to
// clone (a client certificate, neither admin nor impersonated):
//   - "ours": cdi.kubevirt.io through datavolume-apiserver, with the
//     webhooks as deployed (the mutating and validating DataVolume webhooks
//     look the source claim up; the server asks the SubjectAccessReview
//     and signs a grant);
//   - "cdi-shape": the same object under bench.example.com (a CRD in the same
//     kube-apiserver) plus a validating webhook on loopback that asks one
//     SubjectAccessReview per create, as CDI's does (CDI's asks more);
//   - "floor": ours with the clone check answered at once: the same clone
//     from the target's own namespace, so the same webhooks and lookups run
//     but no SubjectAccessReview is asked and no grant signed. What "ours"
//     costs beyond it is the check.
func BenchmarkCloneCreate(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	// The API path only: thousands of DataVolumes must not start Jobs.
	if err := scaleController(ctx, 0); err != nil {
		b.Fatal(err)
	}

	admin, err := benchClient()
	if err != nil {
		b.Fatal(err)
	}
	if err := installCRD(ctx, admin, benchCRD, benchDataVolumes); err != nil {
		b.Fatal(err)
	}
	// BenchmarkCreate removes them for its own run and restores them.
	for _, config := range dataVolumeWebhooks {
		if _, err := cluster.Kubectl(ctx, "", "get", config); err != nil {
			b.Fatalf("the DataVolume webhooks are not registered as deployed: %v", err)
		}
	}
	source := &path{name: "source"}
	paths := []*path{
		{name: "ours", resource: cdiDataVolumes},
		{name: "cdi-shape", resource: benchDataVolumes},
		{name: "floor", resource: cdiDataVolumes},
	}
	if err := createNamespaces(ctx, b, append([]*path{source}, paths...)); err != nil {
		b.Fatal(err)
	}
	ours, cdiShape, floor := paths[0], paths[1], paths[2]
	ours.object = cloneDataVolume(source.ns)
	cdiShape.object = cloneDataVolume(source.ns)
	floor.object = cloneDataVolume("")
	for _, ns := range []string{source.ns, floor.ns} {
		if _, err := cluster.Kubectl(ctx, cloneSource, "create", "-n", ns, "-f", "-"); err != nil {
			b.Fatal(err)
		}
	}
	client, err := cloneUserClient(ctx, b, append([]*path{source}, paths...))
	if err != nil {
		b.Fatal(err)
	}
	hook, err := startSARWebhook(ctx, cdiShape.ns)
	if err != nil {
		b.Fatal(err)
	}
	defer hook.stop(context.WithoutCancel(ctx))
	if err := hook.waitCalled(ctx, client, cdiShape); err != nil {
		b.Fatal(err)
	}
	for _, p := range []*path{ours, floor} {
		if err := waitAdmittedWithoutWarnings(ctx, p); err != nil {
			b.Fatal(err)
		}
	}
	components, err := benchComponents()
	if err != nil {
		b.Fatal(err)
	}

	waitBefore, waitErr := apiserverLimiterWait(ctx)
	b.ResetTimer()
	for iteration := range b.N {
		if err := measure(ctx, client, paths, components, iteration, *workers); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	waitAfter, err := apiserverLimiterWait(ctx)
	waitErr = errors.Join(waitErr, err)

	var table strings.Builder
	fmt.Fprintf(&table, "\nCross-namespace clone DataVolume creates, %d rounds × %d creates per path, %d clients, as a user RBAC allows to clone\n",
		*rounds, *createsRound, *workers)
	fmt.Fprintf(&table, "ours: datavolume-apiserver, webhooks as deployed, one SubjectAccessReview and a grant per create\n")
	fmt.Fprintf(&table, "cdi-shape: a CRD plus a loopback webhook asking one SubjectAccessReview per create\n")
	fmt.Fprintf(&table, "floor: ours with the clone check answered at once (same-namespace clones: same webhooks, no review, no grant)\n")
	latencyTable(b, &table, paths, "clone-")
	throughput := ours.createsPerSecond() / cdiShape.createsPerSecond()
	p99 := float64(ours.percentile(0.99)) / float64(cdiShape.percentile(0.99))
	floorRatio := floor.createsPerSecond() / cdiShape.createsPerSecond()
	fmt.Fprintf(&table, "ratio ours/cdi-shape throughput: %.2f× (goal ≥ 0.80×); p99: %.2f× (goal ≤ 2×)\n", throughput, p99)
	fmt.Fprintf(&table, "ratio floor/cdi-shape throughput: %.2f×; ours/floor: %.2f× (what the clone check costs)\n",
		floorRatio, ours.createsPerSecond()/floor.createsPerSecond())
	if waitErr != nil {
		fmt.Fprintf(&table, "datavolume-apiserver's rate limiter wait: not read: %v\n", waitErr)
	} else {
		fmt.Fprintf(&table, "datavolume-apiserver's POSTs (SubjectAccessReviews) waiting for their rate limiter during the rounds: %s\n", waitAfter.Sub(waitBefore))
	}
	totals := cpuTable(&table, paths, components)
	fmt.Fprintf(&table, "(the cdi-shape webhook runs in the bench client)\n")
	fmt.Print(table.String())
	b.ReportMetric(throughput, "ratio")
	b.ReportMetric(p99, "p99-ratio")
	b.ReportMetric(floorRatio, "floor-ratio")
	for i, p := range paths {
		b.ReportMetric(totals[i], p.name+"-cpu-ms/create")
	}
	b.ReportMetric(0, "ns/op") // one op is the whole comparison: meaningless
}

// BenchmarkVirtualMachineCloneCreate creates VirtualMachines whose one
// dataVolumeTemplate clones a claim of another namespace (the webhook asks
// a SubjectAccessReview for the VM's service account) and the same VMs
// without dataVolumeTemplates (which the webhook's matchConditions leave
// alone), both kubevirt.io, 8 clients, in interleaved rounds. A third path,
// "floor", creates the cloning VMs under bench.example.com (the same CRD
// and audit rules), which a do-nothing validating webhook on loopback admits
// instead of ours: what any webhook hop costs on this machine, so the table
// separates kube-apiserver's cost of calling a webhook from ours. A fourth,
// "pod-hop", sends the VMs without templates to our webhook anyway (see
// startPodHop): a webhook deployed like ours (pod network, Service, client
// certificate) that has nothing to do, the fair floor of the goal.
func BenchmarkVirtualMachineCloneCreate(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	// The API path only: thousands of DataVolumes must not start Jobs.
	if err := scaleController(ctx, 0); err != nil {
		b.Fatal(err)
	}

	client, err := benchClient()
	if err != nil {
		b.Fatal(err)
	}
	if _, err := cluster.Kubectl(ctx, "", "get", vmWebhookConfig); err != nil {
		b.Fatalf("the webhook configuration is not registered: %v", err)
	}
	crd, err := benchVirtualMachineCRD()
	if err != nil {
		b.Fatal(err)
	}
	if err := installCRD(ctx, client, crd, benchVMs); err != nil {
		b.Fatal(err)
	}
	source := &path{name: "vm-source"}
	paths := []*path{
		{name: "cross-ns-templates", resource: kubevirtVMs},
		{name: "no-templates", resource: kubevirtVMs},
		{name: "floor", resource: benchVMs},
		{name: "pod-hop", resource: kubevirtVMs},
	}
	if err := createNamespaces(ctx, b, append([]*path{source}, paths...)); err != nil {
		b.Fatal(err)
	}
	templates, none, floor, hop := paths[0], paths[1], paths[2], paths[3]
	templates.object = cloningVM(source.ns)
	floor.object = cloningVM(source.ns)
	none.object = func(gv schema.GroupVersion, name string) *unstructured.Unstructured {
		vm := cloningVM(source.ns)(gv, name)
		unstructured.RemoveNestedField(vm.Object, "spec", "dataVolumeTemplates")
		return vm
	}
	hop.object = none.object
	if _, err := cluster.Kubectl(ctx, cloneSource, "create", "-n", source.ns, "-f", "-"); err != nil {
		b.Fatal(err)
	}
	// The seed's permission: the target namespace's default service account
	// may clone from the source namespace.
	binding := fmt.Sprintf(`{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"RoleBinding","metadata":{"name":"bench-vm-clone"},`+
		`"roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":%q},`+
		`"subjects":[{"kind":"ServiceAccount","name":"default","namespace":%q}]}`, cloneRole, templates.ns)
	if _, err := cluster.Kubectl(ctx, cloneRoleManifest, "apply", "-f", "-"); err != nil {
		b.Fatal(err)
	}
	if _, err := cluster.Kubectl(ctx, binding, "create", "-n", source.ns, "-f", "-"); err != nil {
		b.Fatal(err)
	}
	if err := checkVMCloneAdmission(ctx, client, templates, none); err != nil {
		b.Fatal(err)
	}
	floorHook, err := startFloorWebhook(ctx, floor.ns)
	if err != nil {
		b.Fatal(err)
	}
	defer floorHook.stop(context.WithoutCancel(ctx))
	if err := floorHook.waitCalled(ctx, client, floor); err != nil {
		b.Fatal(err)
	}
	stopHop, err := startPodHop(ctx, hop.ns)
	if err != nil {
		b.Fatal(err)
	}
	defer stopHop(context.WithoutCancel(ctx))
	if err := waitPodHopCalled(ctx, client, hop); err != nil {
		b.Fatal(err)
	}
	components, err := benchComponents()
	if err != nil {
		b.Fatal(err)
	}

	waitBefore, waitErr := webhookLimiterWait(ctx)
	b.ResetTimer()
	for iteration := range b.N {
		if err := measure(ctx, client, paths, components, iteration, *workers); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	waitAfter, err := webhookLimiterWait(ctx)
	waitErr = errors.Join(waitErr, err)
	if err := profilePaths(ctx, client, "vm-clone", paths, *workers); err != nil {
		b.Fatal(err)
	}

	var table strings.Builder
	fmt.Fprintf(&table, "\nVirtualMachine creates, %d rounds × %d creates per path, %d clients: a dataVolumeTemplate cloning from another namespace vs none\n",
		*rounds, *createsRound, *workers)
	fmt.Fprintf(&table, "cross-ns-templates: kubevirt.io, admitted by %s (pod network) after a SubjectAccessReview or its cached answer\n", vmWebhook)
	fmt.Fprintf(&table, "no-templates: kubevirt.io, the same VMs without dataVolumeTemplates (no webhook called)\n")
	fmt.Fprintf(&table, "floor: the cloning VMs under bench.example.com, admitted by a do-nothing webhook on loopback instead of ours\n")
	fmt.Fprintf(&table, "pod-hop: the no-templates VMs, sent anyway to %s's VirtualMachine endpoint (same Service, client and connections as %s), which has nothing to check\n", "datavolume-webhook", vmWebhook)
	latencyTable(b, &table, paths, "vm-clone-")
	ratio := templates.createsPerSecond() / none.createsPerSecond()
	floorRatio := floor.createsPerSecond() / none.createsPerSecond()
	oursFloor := templates.createsPerSecond() / floor.createsPerSecond()
	fmt.Fprintf(&table, "ratio cross-ns-templates/no-templates throughput: %.2f× (goal ≥ 0.80×)\n", ratio)
	fmt.Fprintf(&table, "ratio floor/no-templates throughput: %.2f× (what a webhook hop that does nothing allows)\n", floorRatio)
	fmt.Fprintf(&table, "ratio cross-ns-templates/floor throughput: %.2f× (what our webhook costs beyond the hop)\n", oursFloor)
	hopRatio := hop.createsPerSecond() / none.createsPerSecond()
	fmt.Fprintf(&table, "ratio pod-hop/no-templates throughput: %.2f× (a webhook deployed like ours doing nothing, for VMs without templates: the fair floor at most)\n", hopRatio)
	fmt.Fprintf(&table, "ratio cross-ns-templates/pod-hop throughput: %.2f× (what the clone check costs beyond calling our pod)\n", templates.createsPerSecond()/hop.createsPerSecond())
	// The fair floor is a webhook that does nothing with our objects over
	// our hop. "pod-hop" bounds it from above: our hop, with smaller objects
	// (no templates) that cost less to send, store and answer. "floor" sends
	// our objects over another hop (loopback, HTTP/1.1, no client
	// certificate, its server in the bench client): not a bound, shown for
	// the size of the objects.
	if hopRatio < 0.80 {
		fmt.Fprintf(&table, "the goal (≥ 0.80×) is out of this machine's reach: a webhook deployed like ours that does nothing allows at most %.2f× (pod-hop), ours %.2f×\n", hopRatio, ratio)
	}
	if waitErr != nil {
		fmt.Fprintf(&table, "datavolume-webhook's rate limiter wait: not read: %v\n", waitErr)
	} else {
		fmt.Fprintf(&table, "datavolume-webhook's POSTs (SubjectAccessReviews) waiting for their rate limiter during the rounds: %s\n", waitAfter.Sub(waitBefore))
	}
	totals := cpuTable(&table, paths, components)
	fmt.Fprintf(&table, "(the floor's webhook runs in the bench client)\n")
	fmt.Print(table.String())
	b.ReportMetric(ratio, "ratio")
	b.ReportMetric(floorRatio, "floor-ratio")
	b.ReportMetric(oursFloor, "ours-floor-ratio")
	b.ReportMetric(hopRatio, "pod-hop-ratio")
	for i, p := range paths {
		b.ReportMetric(totals[i], p.name+"-cpu-ms/create")
	}
	b.ReportMetric(0, "ns/op") // one op is the whole comparison: meaningless
}

// cloneDataVolume makes DataVolumes cloning cloneClaim of sourceNamespace
// (of their own namespace when empty).
func cloneDataVolume(sourceNamespace string) func(gv schema.GroupVersion, name string) *unstructured.Unstructured {
	return func(gv schema.GroupVersion, name string) *unstructured.Unstructured {
		dv := dataVolume(gv, name)
		pvc := map[string]any{"name": cloneClaim}
		if sourceNamespace != "" {
			pvc["namespace"] = sourceNamespace
		}
		dv.Object["spec"].(map[string]any)["source"] = map[string]any{"pvc": pvc}
		return dv
	}
}

// cloningVM makes the benchmark's VirtualMachines: vmObject's, with the
// template cloning from sourceNamespace.
func cloningVM(sourceNamespace string) func(gv schema.GroupVersion, name string) *unstructured.Unstructured {
	object, _ := vmObject("pvc")
	return func(gv schema.GroupVersion, name string) *unstructured.Unstructured {
		vm := object(gv, name)
		templates, _, _ := unstructured.NestedSlice(vm.Object, "spec", "dataVolumeTemplates")
		_ = unstructured.SetNestedField(templates[0].(map[string]any), map[string]any{"namespace": sourceNamespace, "name": cloneClaim}, "spec", "source", "pvc")
		_ = unstructured.SetNestedSlice(vm.Object, templates, "spec", "dataVolumeTemplates")
		return vm
	}
}

// cloneUserClient binds cloneRole to the bench user in each path's
// namespace and returns a client authenticated as that user (a client
// certificate), once RBAC lets it clone.
func cloneUserClient(ctx context.Context, b *testing.B, paths []*path) (dynamic.Interface, error) {
	if _, err := cluster.Kubectl(ctx, cloneRoleManifest, "apply", "-f", "-"); err != nil {
		return nil, err
	}
	for _, p := range paths {
		if _, err := cluster.Kubectl(ctx, "", "create", "rolebinding", cloneRole, "-n", p.ns, "--clusterrole="+cloneRole, "--user="+cloneUser); err != nil {
			return nil, err
		}
	}
	kubeconfig, err := cluster.UserKubeconfig(cloneUser)
	if err != nil {
		return nil, err
	}
	rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("loading %s: %w", kubeconfig, err)
	}
	rc.QPS, rc.Burst = 1000, 1000
	rc.Timeout = 30 * time.Second
	rc.UserAgent = rest.DefaultKubernetesUserAgent() + " datavolume-bench"
	client, err := dynamic.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	// RBAC reaches kube-apiserver's authorizer moments after the bindings.
	var last error
	err = wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		_, last = client.Resource(paths[1].resource).Namespace(paths[1].ns).Create(ctx, paths[1].newObject("bench-probe"),
			metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		return last == nil, nil
	})
	if err != nil {
		return nil, fmt.Errorf("%s may not clone yet (last answer: %v): %w", cloneUser, last, err)
	}
	return client, nil
}

// waitAdmittedWithoutWarnings waits until a dry-run create on p is
// admitted without a warning: the webhook answers and its cache holds the
// source claim.
func waitAdmittedWithoutWarnings(ctx context.Context, p *path) error {
	kubeconfig, err := cluster.UserKubeconfig(cloneUser)
	if err != nil {
		return err
	}
	rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return err
	}
	warnings := &warningRecorder{}
	rc.WarningHandler = warnings
	client, err := dynamic.NewForConfig(rc)
	if err != nil {
		return err
	}
	var last error
	err = wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		warnings.reset()
		_, last = client.Resource(p.resource).Namespace(p.ns).Create(ctx, p.newObject("bench-probe"), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		return last == nil && warnings.count() == 0, nil
	})
	if err != nil {
		return fmt.Errorf("%s path: a clone is not admitted without warnings (last answer: %v): %w", p.name, last, err)
	}
	return nil
}

// checkVMCloneAdmission makes sure, by dry-run creates, that the webhook
// checks the templates' clone permission (a VM of a namespace whose service
// account may not clone is refused) and that both measured VMs are admitted.
func checkVMCloneAdmission(ctx context.Context, client dynamic.Interface, templates, none *path) error {
	dryRun := metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}
	_, err := client.Resource(none.resource).Namespace(none.ns).Create(ctx, templates.newObject("bench-probe-refused"), dryRun)
	if err == nil || !strings.Contains(err.Error(), `admission webhook "`+vmWebhook+`" denied the request`) {
		return fmt.Errorf("a VM whose service account may not clone is not refused by %s: %v", vmWebhook, err)
	}
	var last error
	err = wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		_, last = client.Resource(templates.resource).Namespace(templates.ns).Create(ctx, templates.newObject("bench-probe"), dryRun)
		return last == nil, nil
	})
	if err != nil {
		return fmt.Errorf("%s path: the measured VM is refused (last answer: %v): %w", templates.name, last, err)
	}
	if _, err := client.Resource(none.resource).Namespace(none.ns).Create(ctx, none.newObject("bench-probe"), dryRun); err != nil {
		return fmt.Errorf("%s path: the measured VM is refused: %w", none.name, err)
	}
	return nil
}

func apiserverLimiterWait(ctx context.Context) (podmetrics.LimiterWait, error) {
	metrics, err := podmetrics.APIServer(ctx, cluster)
	if err != nil {
		return podmetrics.LimiterWait{}, err
	}
	return podmetrics.RateLimiterWait(metrics, "POST"), nil
}

func webhookLimiterWait(ctx context.Context) (podmetrics.LimiterWait, error) {
	metrics, err := podmetrics.Webhook(ctx, cluster)
	if err != nil {
		return podmetrics.LimiterWait{}, err
	}
	return podmetrics.RateLimiterWait(metrics, "POST"), nil
}
