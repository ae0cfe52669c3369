//go:build e2e

package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"
)

var (
	vmSource  = flag.String("dv.vm.source", "pvc", "source of the VMs' dataVolumeTemplate: pvc (a claim of the VM's namespace) or http")
	vmWorkers = flag.Int("dv.vm.workers", 0, "concurrent clients per round of the VirtualMachine benchmark's throughput pass; 0: -dv.workers (its latency pass has one)")
)

// The webhook checks VirtualMachines of kubevirt.io; the bench group serves
// the same CRD, which no webhook matches.
var (
	kubevirtVMs = schema.GroupVersionResource{Group: "kubevirt.io", Version: "v1", Resource: "virtualmachines"}
	benchVMs    = schema.GroupVersionResource{Group: "bench.example.com", Version: "v1", Resource: "virtualmachines"}
)

// vmWebhook is the webhook of the validating configuration (as deployed by
// the local cluster, from artifacts/deploy/webhook) that admits VirtualMachines.
const (
	vmWebhook           = "clone.cdi.kubevirt.io"
	vmWebhookConfig     = "validatingwebhookconfiguration/datavolume-webhook"
	vmCloneSource       = "bench-source"
	vmCloneSourceClaim  = `{"apiVersion":"v1","kind":"PersistentVolumeClaim","metadata":{"name":"` + vmCloneSource + `"},"spec":{"accessModes":["ReadWriteOnce"],"resources":{"requests":{"storage":"1Gi"}}}}`
	vmCRDTestingRelPath = "artifacts/testing/virtualmachine-crd.yaml"
)

// BenchmarkVirtualMachineCreate creates VirtualMachines through kube-apiserver
// with the validating webhook registered and called ("webhook", kubevirt.io)
// and with no webhook matching ("no-webhook", the same CRD under
// bench.example.com), in interleaved rounds, in two passes: one client, for
// what the webhook adds to p50 and p99 (with more clients than the machine
// has CPUs the latencies would be mostly queueing), then -dv.vm.workers
// clients, for the throughput ratio. The latency pass has a third path,
// "floor": the no-webhook objects in a namespace where a do-nothing webhook
// on loopback admits them, so the table separates kube-apiserver's cost of
// calling a webhook from ours. Each VM has
// one dataVolumeTemplate that clones a claim of its own namespace (or imports
// over http), so the webhook needs no SubjectAccessReview. The webhook
// configuration is registered on both paths; only its call differs.
func BenchmarkVirtualMachineCreate(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	object, err := vmObject(*vmSource)
	if err != nil {
		b.Fatal(err)
	}
	workers := *workers
	if *vmWorkers > 0 {
		workers = *vmWorkers
	}
	client, err := benchClient()
	if err != nil {
		b.Fatal(err)
	}
	crd, err := benchVirtualMachineCRD()
	if err != nil {
		b.Fatal(err)
	}
	if err := installCRD(ctx, client, crd, benchVMs); err != nil {
		b.Fatal(err)
	}
	// BenchmarkCreate restores the configurations it removes; make sure.
	if _, err := cluster.Kubectl(ctx, "", "get", vmWebhookConfig); err != nil {
		b.Fatalf("the webhook configuration is not registered: %v", err)
	}
	paths := []*path{
		{name: "webhook", resource: kubevirtVMs, object: object},
		{name: "no-webhook", resource: benchVMs, object: object},
		{name: "floor", resource: benchVMs, object: object},
	}
	if err := createNamespaces(ctx, b, paths); err != nil {
		b.Fatal(err)
	}
	hook, none, floor := paths[0], paths[1], paths[2]
	floorHook, err := startFloorWebhook(ctx, floor.ns)
	if err != nil {
		b.Fatal(err)
	}
	defer floorHook.stop(context.WithoutCancel(ctx))
	if err := floorHook.waitCalled(ctx, client, floor); err != nil {
		b.Fatal(err)
	}
	for _, p := range paths {
		if _, err := cluster.Kubectl(ctx, vmCloneSourceClaim, "create", "-n", p.ns, "-f", "-"); err != nil {
			b.Fatal(err)
		}
	}
	if err := checkVMAdmission(ctx, client, paths[0], paths[1], object); err != nil {
		b.Fatal(err)
	}
	components, err := benchComponents()
	if err != nil {
		b.Fatal(err)
	}

	var table strings.Builder
	fmt.Fprintf(&table, "\nVirtualMachine creates, %d rounds × %d creates per path and pass, dataVolumeTemplate source %s, no SubjectAccessReview\n",
		*rounds, *createsRound, *vmSource)
	b.ResetTimer()
	// Latency: one client, so a create waits for nothing but itself, and
	// the paths take turns create by create, so a slow moment of the
	// machine (an etcd fsync, a GC) falls on both alike.
	for iteration := range b.N {
		if err := measureInterleaved(ctx, client, paths, iteration, *rounds**createsRound); err != nil {
			b.Fatal(err)
		}
	}
	fmt.Fprintf(&table, "one client, paths taking turns create by create (latency):\n")
	latencyTable(b, &table, paths, "latency-")
	addedP50 := hook.percentile(0.50) - none.percentile(0.50)
	addedP99 := hook.percentile(0.99) - none.percentile(0.99)
	floorP50 := floor.percentile(0.50) - none.percentile(0.50)
	floorP99 := floor.percentile(0.99) - none.percentile(0.99)
	// What path a adds to path b's q-quantile, with its 95% bootstrap
	// interval: how far one run's difference may be from the machine's.
	added := func(a, b *path, q float64) string {
		lo, hi := quantileDiffInterval(a.latencies, b.latencies, q, 1000, 1)
		r := func(d time.Duration) time.Duration { return d.Round(10 * time.Microsecond) }
		return fmt.Sprintf("%s [%s, %s]", r(a.percentile(q)-b.percentile(q)), r(lo), r(hi))
	}
	fmt.Fprintf(&table, "added by the webhook: p50 %s, p99 %s (goal p99 < 2ms; 95%% bootstrap intervals)\n",
		added(hook, none, 0.50), added(hook, none, 0.99))
	fmt.Fprintf(&table, "added by a do-nothing webhook on loopback (kube-apiserver's cost of a call): p50 %s, p99 %s\n",
		added(floor, none, 0.50), added(floor, none, 0.99))
	fmt.Fprintf(&table, "added by the webhook beyond the do-nothing one: p50 %s, p99 %s\n",
		added(hook, floor, 0.50), added(hook, floor, 0.99))

	// Throughput: as many clients as -dv.vm.workers, the two paths compared.
	paths = paths[:2]
	for iteration := range b.N {
		if err := measure(ctx, client, paths, components, b.N+iteration, workers); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	fmt.Fprintf(&table, "\n%d clients, interleaved rounds (throughput):\n", workers)
	latencyTable(b, &table, paths, "throughput-")
	ratio := hook.createsPerSecond() / none.createsPerSecond()
	fmt.Fprintf(&table, "ratio webhook/no-webhook throughput: %.2f×\n", ratio)
	totals := cpuTable(&table, paths, components)
	fmt.Print(table.String())
	b.ReportMetric(ms(addedP50), "added-p50-ms")
	b.ReportMetric(ms(addedP99), "added-p99-ms")
	b.ReportMetric(ms(floorP50), "floor-added-p50-ms")
	b.ReportMetric(ms(floorP99), "floor-added-p99-ms")
	b.ReportMetric(ratio, "ratio")
	b.ReportMetric(totals[0], "webhook-cpu-ms/create")
	b.ReportMetric(totals[1], "no-webhook-cpu-ms/create")
	b.ReportMetric(0, "ns/op") // one op is the whole comparison: meaningless
}

// benchVirtualMachineCRD is the testing VirtualMachine CRD under
// bench.example.com: the same versions and schema, without the short names
// and categories that belong to kubevirt.io's.
func benchVirtualMachineCRD() (string, error) {
	raw, err := os.ReadFile(filepath.Join("..", "..", vmCRDTestingRelPath))
	if err != nil {
		return "", err
	}
	var crd map[string]any
	if err := yaml.Unmarshal(raw, &crd); err != nil {
		return "", fmt.Errorf("%s: %w", vmCRDTestingRelPath, err)
	}
	u := unstructured.Unstructured{Object: crd}
	u.SetName(benchVMs.GroupResource().String())
	u.SetLabels(nil)
	if err := unstructured.SetNestedField(crd, benchVMs.Group, "spec", "group"); err != nil {
		return "", err
	}
	unstructured.RemoveNestedField(crd, "spec", "names", "shortNames")
	unstructured.RemoveNestedField(crd, "spec", "names", "categories")
	out, err := yaml.Marshal(crd)
	if err != nil {
		return "", err
	}
	return string(out), nil
}

// vmObject returns VirtualMachines shaped like the seed's: not running, one
// dataVolumeTemplate named after the VM, cloning vmCloneSource of the VM's
// namespace or importing over http.
func vmObject(source string) (func(gv schema.GroupVersion, name string) *unstructured.Unstructured, error) {
	var src map[string]any
	switch source {
	case "pvc":
		src = map[string]any{"pvc": map[string]any{"name": vmCloneSource}}
	case "http":
		src = map[string]any{"http": map[string]any{"url": "http://images.example.com/disk.img"}}
	default:
		return nil, fmt.Errorf("-dv.vm.source %q: want pvc or http", source)
	}
	return func(gv schema.GroupVersion, name string) *unstructured.Unstructured {
		return &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": gv.String(),
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
					"spec": map[string]any{
						"source": src,
						"pvc": map[string]any{
							"accessModes": []any{"ReadWriteOnce"},
							"resources":   map[string]any{"requests": map[string]any{"storage": "1Gi"}},
						},
					},
				}},
			},
		}}
	}, nil
}

// measureInterleaved creates n objects on each path with one client, the
// paths taking turns (A B B A ...) create by create, after a warm-up
// round per path. It resets and fills each path's latencies and elapsed
// time (the sum of its creates' latencies); CPU is not split between the
// paths here.
func measureInterleaved(ctx context.Context, client dynamic.Interface, paths []*path, iteration, n int) error {
	for _, p := range paths {
		p.latencies, p.elapsed, p.cpu = make([]time.Duration, 0, n), 0, map[string]time.Duration{}
		if _, _, err := createRound(ctx, client, p, fmt.Sprintf("l%d-warm", iteration), max(*createsRound/4, 1), 1); err != nil {
			return err
		}
	}
	for i := range n {
		order := slices.Clone(paths)
		if i%2 == 1 {
			slices.Reverse(order)
		}
		for _, p := range order {
			obj := p.newObject(fmt.Sprintf("l%d-%05d", iteration, i))
			t0 := time.Now()
			_, err := client.Resource(p.resource).Namespace(p.ns).Create(ctx, obj, metav1.CreateOptions{})
			latency := time.Since(t0)
			if err != nil {
				return fmt.Errorf("%s: creating %s: %w", p.name, obj.GetName(), err)
			}
			p.latencies = append(p.latencies, latency)
			p.elapsed += latency
		}
	}
	return nil
}

// checkVMAdmission makes sure, by dry-run creates, that the webhook path
// calls the webhook (a template without a name is refused by it) and the
// other does not (the same object is stored), and that the measured object
// is admitted on both.
func checkVMAdmission(ctx context.Context, client dynamic.Interface, hook, none *path, object func(schema.GroupVersion, string) *unstructured.Unstructured) error {
	dryRun := metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}
	invalid := func(p *path) *unstructured.Unstructured {
		obj := object(p.resource.GroupVersion(), "bench-probe-invalid")
		templates, _, _ := unstructured.NestedSlice(obj.Object, "spec", "dataVolumeTemplates")
		unstructured.RemoveNestedField(templates[0].(map[string]any), "metadata", "name")
		_ = unstructured.SetNestedSlice(obj.Object, templates, "spec", "dataVolumeTemplates")
		return obj
	}
	// kube-apiserver reads the configuration through an informer: wait
	// until it calls the webhook (it does already unless just restored).
	var last error
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		_, last = client.Resource(hook.resource).Namespace(hook.ns).Create(ctx, invalid(hook), dryRun)
		return last != nil && strings.Contains(last.Error(), `admission webhook "`+vmWebhook+`" denied the request`), nil
	})
	if err != nil {
		return fmt.Errorf("%s path: a VM with an unnamed dataVolumeTemplate is not refused by %s (last answer: %v): %w", hook.name, vmWebhook, last, err)
	}
	if !apierrors.IsInvalid(last) {
		return fmt.Errorf("%s path: refusal is not 422 Invalid: %w", hook.name, last)
	}
	if _, err := client.Resource(none.resource).Namespace(none.ns).Create(ctx, invalid(none), dryRun); err != nil {
		return fmt.Errorf("%s path: a VM with an unnamed dataVolumeTemplate is refused, so some admission runs there: %w", none.name, err)
	}
	var errs []error
	for _, p := range []*path{hook, none} {
		if _, err := client.Resource(p.resource).Namespace(p.ns).Create(ctx, object(p.resource.GroupVersion(), "bench-probe"), dryRun); err != nil {
			errs = append(errs, fmt.Errorf("%s path: the measured VM is refused: %w", p.name, err))
		}
	}
	return errors.Join(errs...)
}
