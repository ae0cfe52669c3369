//go:build e2e

package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"

	"github.com/datavolume/datavolume/pkg/apis/cdi/v1beta1"
	cdiclient "github.com/datavolume/datavolume/pkg/generated/clientset/versioned"
)

var importRounds = flag.Int("dv.import-rounds", 3, "rounds of the 1 GiB import, each path once per round")

// startController deletes the DataVolumes the API benchmarks left (the
// controller would fill each), then runs the controller's two replicas.
func startController(ctx context.Context) error {
	if _, err := cluster.Kubectl(ctx, "", "delete", "datavolumes", "--all", "--all-namespaces", "--wait=false"); err != nil {
		return err
	}
	return scaleController(ctx, 2)
}

// scaleController sets datavolume-controller's replicas and waits for them:
// the API benchmarks run with none, so thousands of DataVolumes start no Job.
func scaleController(ctx context.Context, replicas int) error {
	if _, err := cluster.Kubectl(ctx, "", "scale", "-n", "datavolume-system", "deployment/datavolume-controller", "--replicas="+strconv.Itoa(replicas)); err != nil {
		return err
	}
	if replicas == 0 {
		_, err := cluster.Kubectl(ctx, "", "wait", "-n", "datavolume-system", "pod", "-l", "app.kubernetes.io/name=datavolume-controller", "--for=delete", "--timeout=120s")
		return err
	}
	_, err := cluster.Kubectl(ctx, "", "rollout", "status", "-n", "datavolume-system", "deployment/datavolume-controller", "--timeout=180s")
	return err
}

func clients(b *testing.B) (kubernetes.Interface, cdiclient.Interface) {
	b.Helper()
	kube, err := cluster.Client()
	if err != nil {
		b.Fatal(err)
	}
	config, err := clientcmd.BuildConfigFromFlags("", cluster.Kubeconfig)
	if err != nil {
		b.Fatal(err)
	}
	cdi, err := cdiclient.NewForConfig(config)
	if err != nil {
		b.Fatal(err)
	}
	return kube, cdi
}

// serveDir serves dir over HTTP at the host's address for pods (they cannot reach
// this host's loopback) and returns the base URL and a stop function.
func serveDir(dir string) (string, func(), error) {
	l, err := net.Listen("tcp", net.JoinHostPort(cluster.HostAddressForPods().String(), "0"))
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: http.FileServer(http.Dir(dir)), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(l) }()
	return "http://" + l.Addr().String(), func() { _ = srv.Close() }, nil
}

// writeHalfFullDisk writes a raw disk of size bytes whose even MiBs hold
// random data and odd MiBs zeros.
func writeHalfFullDisk(path string, size int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	rng := rand.NewChaCha8([32]byte{1})
	buf := make([]byte, 1<<20)
	for off := int64(0); off < size; off += 2 << 20 {
		_, _ = rng.Read(buf)
		if _, err := f.WriteAt(buf, off); err != nil {
			return err
		}
	}
	return f.Truncate(size)
}

// timeline is when the benchmark saw each step of one import.
type timeline struct {
	created, claimCreated, claimBound, jobCreated, podRunning, podDone, ready time.Time
}

func (t timeline) total() time.Duration { return t.ready.Sub(t.created) }

// BenchmarkImportCreateToReady times a 1 GiB qcow2 (half data) from create
// to Ready through the whole system, against the same import run as a
// hand-written claim and Job on the same cluster, rounds interleaved. Goal:
// ≤ 1.10×. The overhead is split into claim, Job, claim bound, pod start,
// transfer and status from what a 100 ms poll saw. The floor beside them is
// the same Job whose container does nothing (the cloner's --help), with a
// claim of its own: what a claim and a pod cost before any data moves.
func BenchmarkImportCreateToReady(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	if err := startController(ctx); err != nil {
		b.Fatal(err)
	}
	kube, cdi := clients(b)
	dir := b.TempDir()
	raw := filepath.Join(dir, "disk.raw")
	if err := writeHalfFullDisk(raw, 1<<30); err != nil {
		b.Fatal(err)
	}
	if out, err := exec.Command("qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, filepath.Join(dir, "disk.qcow2")).CombinedOutput(); err != nil {
		b.Fatalf("qemu-img: %v %s", err, out)
	}
	_ = os.Remove(raw)
	base, stop, err := serveDir(dir)
	if err != nil {
		b.Fatal(err)
	}
	defer stop()
	ns := fmt.Sprintf("bench-import-%d", time.Now().UnixNano()%1_000_000)
	if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = kube.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{}) }()
	url := base + "/disk.qcow2"

	// A warm-up of each path, not counted: the controller has just started
	// (its first sync came 0.3 s late), and the node has not run the
	// cloner with a fresh claim yet.
	if _, err := importThroughDataVolume(ctx, kube, cdi, ns, "dv-warm", url, "1Gi"); err != nil {
		b.Fatal(err)
	}
	if _, err := importThroughJob(ctx, kube, ns, "job-warm", url, false); err != nil {
		b.Fatal(err)
	}
	var ours, theirs, idle []timeline
	for round := range *importRounds {
		runOurs := func() error {
			tl, err := importThroughDataVolume(ctx, kube, cdi, ns, fmt.Sprintf("dv-%d", round), url, "1Gi")
			ours = append(ours, tl)
			return err
		}
		runTheirs := func() error {
			tl, err := importThroughJob(ctx, kube, ns, fmt.Sprintf("job-%d", round), url, false)
			theirs = append(theirs, tl)
			return err
		}
		first, second := runOurs, runTheirs
		if round%2 == 1 {
			first, second = runTheirs, runOurs
		}
		if err := first(); err != nil {
			b.Fatal(err)
		}
		if err := second(); err != nil {
			b.Fatal(err)
		}
		tl, err := importThroughJob(ctx, kube, ns, fmt.Sprintf("idle-%d", round), url, true)
		if err != nil {
			b.Fatal(err)
		}
		idle = append(idle, tl)
	}
	med := func(tls []timeline, step func(timeline) time.Duration) time.Duration {
		ds := make([]time.Duration, len(tls))
		for i, tl := range tls {
			ds[i] = step(tl)
		}
		slices.Sort(ds)
		return ds[len(ds)/2]
	}
	oursTotal, theirsTotal := med(ours, timeline.total), med(theirs, timeline.total)
	ratio := float64(oursTotal) / float64(theirsTotal)
	var out strings.Builder
	fmt.Fprintf(&out, "\ncreate→Ready of a 1 GiB qcow2 (512 MiB data), median of %d rounds:\n", *importRounds)
	fmt.Fprintf(&out, "  DataVolume           %8.2f s\n  hand-written Job     %8.2f s\n  ratio                %8.2f×  (goal ≤ 1.10×)\n",
		oursTotal.Seconds(), theirsTotal.Seconds(), ratio)
	idleTotal := med(idle, timeline.total)
	fmt.Fprintf(&out, "  floor: the Job with a container doing nothing (cloner --help), its own claim: %.2f s; the Job's transfer beyond it %.2f s\n",
		idleTotal.Seconds(), (theirsTotal - idleTotal).Seconds())
	fmt.Fprintf(&out, "  DataVolume − Job: %.2f s (the goal allows %.2f s)\n", (oursTotal - theirsTotal).Seconds(), theirsTotal.Seconds()*0.10)
	steps := []struct {
		name string
		step func(timeline) time.Duration
	}{
		{"claim (create → claim created)", func(t timeline) time.Duration { return t.claimCreated.Sub(t.created) }},
		{"Job (claim created → Job created)", func(t timeline) time.Duration { return t.jobCreated.Sub(t.claimCreated) }},
		{"claim bound (Job → claim bound)", func(t timeline) time.Duration { return t.claimBound.Sub(t.jobCreated) }},
		{"pod start (claim bound → pod running)", func(t timeline) time.Duration { return t.podRunning.Sub(t.claimBound) }},
		{"transfer (pod running → pod done)", func(t timeline) time.Duration { return t.podDone.Sub(t.podRunning) }},
		{"status (pod done → Ready/Complete)", func(t timeline) time.Duration { return t.ready.Sub(t.podDone) }},
	}
	fmt.Fprintf(&out, "  %-40s %10s %10s %10s\n", "step (median)", "DataVolume", "Job", "floor")
	for _, s := range steps {
		fmt.Fprintf(&out, "  %-40s %9.2fs %9.2fs %9.2fs\n", s.name, med(ours, s.step).Seconds(), med(theirs, s.step).Seconds(), med(idle, s.step).Seconds())
	}
	for i := range ours {
		fmt.Fprintf(&out, "  round %d: DataVolume %.2f s, Job %.2f s, floor %.2f s\n", i, ours[i].total().Seconds(), theirs[i].total().Seconds(), idle[i].total().Seconds())
	}
	// Not b.Log: without -v the testing package cuts a benchmark's log at ten lines.
	fmt.Print(out.String())
	b.ReportMetric(ratio, "ratio")
	b.ReportMetric(oursTotal.Seconds(), "dv-s")
	b.ReportMetric(theirsTotal.Seconds(), "job-s")
	b.ReportMetric(idleTotal.Seconds(), "floor-s")
}

// importThroughDataVolume creates a DataVolume and polls until it is Ready.
func importThroughDataVolume(ctx context.Context, kube kubernetes.Interface, cdi cdiclient.Interface, ns, name, url, size string) (timeline, error) {
	dv := &v1beta1.DataVolume{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: v1beta1.DataVolumeSpec{
			Source: &v1beta1.DataVolumeSource{HTTP: &v1beta1.DataVolumeSourceHTTP{URL: url}},
			Storage: &v1beta1.StorageSpec{Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{
				corev1.ResourceStorage: resource.MustParse(size)}}},
		},
	}
	var tl timeline
	tl.created = time.Now()
	if _, err := cdi.CdiV1beta1().DataVolumes(ns).Create(ctx, dv, metav1.CreateOptions{}); err != nil {
		return tl, err
	}
	return tl, pollTimeline(ctx, kube, ns, name, "importer-"+name, &tl, dataVolumeReady(ctx, cdi, ns, name))
}

// importThroughJob is the baseline: the claim and the Job a user would
// write by hand, with the controller's image, arguments and claim size;
// with doNothing, the same whose container only prints its help.
func importThroughJob(ctx context.Context, kube kubernetes.Interface, ns, name, url string, doNothing bool) (timeline, error) {
	var tl timeline
	tl.created = time.Now()
	claim := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{
				corev1.ResourceStorage: resource.MustParse("1084Mi")}},
		},
	}
	if _, err := kube.CoreV1().PersistentVolumeClaims(ns).Create(ctx, claim, metav1.CreateOptions{}); err != nil {
		return tl, err
	}
	args := []string{"import", "--url=" + url, "--target=/data/disk.img", "--target-size=1Gi"}
	if doNothing {
		args = []string{"--help"}
	}
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: "importer-" + name, Namespace: ns},
		Spec: batchv1.JobSpec{
			BackoffLimit: ptr.To[int32](0),
			Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
				RestartPolicy: corev1.RestartPolicyNever,
				Containers: []corev1.Container{{
					Name: "cloner", Image: cluster.Image("datavolume-cloner"), ImagePullPolicy: corev1.PullIfNotPresent,
					Args:         args,
					VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}},
				}},
				Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{
					PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: name}}}},
			}},
		},
	}
	if _, err := kube.BatchV1().Jobs(ns).Create(ctx, job, metav1.CreateOptions{}); err != nil {
		return tl, err
	}
	return tl, pollTimeline(ctx, kube, ns, name, job.Name, &tl, jobDone(ctx, kube, ns, job.Name))
}

// pollTimeline polls every 100 ms, noting when the claim, the Job and its
// pod reached each step, until done says so.
func pollTimeline(ctx context.Context, kube kubernetes.Interface, ns, claimName, jobName string, tl *timeline, done func() (bool, error)) error {
	deadline := time.Now().Add(10 * time.Minute)
	for time.Now().Before(deadline) {
		now := time.Now()
		if tl.claimCreated.IsZero() || tl.claimBound.IsZero() {
			if c, err := kube.CoreV1().PersistentVolumeClaims(ns).Get(ctx, claimName, metav1.GetOptions{}); err == nil {
				if tl.claimCreated.IsZero() {
					tl.claimCreated = now
				}
				if c.Status.Phase == corev1.ClaimBound {
					tl.claimBound = now
				}
			}
		}
		if tl.jobCreated.IsZero() {
			if _, err := kube.BatchV1().Jobs(ns).Get(ctx, jobName, metav1.GetOptions{}); err == nil {
				tl.jobCreated = now
			} else if !apierrors.IsNotFound(err) {
				return err
			}
		}
		if tl.podDone.IsZero() {
			pods, err := kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: labels.Set{"batch.kubernetes.io/job-name": jobName}.String()})
			if err != nil {
				return err
			}
			for _, p := range pods.Items {
				if p.Status.Phase == corev1.PodRunning && tl.podRunning.IsZero() {
					tl.podRunning = now
				}
				if p.Status.Phase == corev1.PodSucceeded {
					if tl.podRunning.IsZero() {
						tl.podRunning = now
					}
					tl.podDone = now
				}
			}
		}
		ok, err := done()
		if err != nil {
			return err
		}
		if ok {
			tl.ready = now
			if tl.podDone.IsZero() {
				tl.podDone = now
			}
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%s/%s not done in 10 minutes", ns, claimName)
}

// BenchmarkManyDataVolumes creates 200 small imports at once: all must
// succeed; it reports the controller's peak RSS (goal < 150 MiB) and the
// API writes it made per DataVolume over their whole lives, counted from
// kube-apiserver's audit log (goal ≤ 15).
func BenchmarkManyDataVolumes(b *testing.B) {
	const count = 200
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	if err := startController(ctx); err != nil {
		b.Fatal(err)
	}
	kube, cdi := clients(b)
	dir := b.TempDir()
	if err := writeHalfFullDisk(filepath.Join(dir, "small.raw"), 1<<20); err != nil {
		b.Fatal(err)
	}
	base, stop, err := serveDir(dir)
	if err != nil {
		b.Fatal(err)
	}
	defer stop()
	ns := fmt.Sprintf("bench-many-%d", time.Now().UnixNano()%1_000_000)
	if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = kube.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{}) }()

	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, count)
	names := make(chan string, count)
	for i := range count {
		names <- fmt.Sprintf("small-%03d", i)
	}
	close(names)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for name := range names {
				dv := &v1beta1.DataVolume{
					ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
					Spec: v1beta1.DataVolumeSpec{
						Source: &v1beta1.DataVolumeSource{HTTP: &v1beta1.DataVolumeSourceHTTP{URL: base + "/small.raw"}},
						PVC: &corev1.PersistentVolumeClaimSpec{
							AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
							Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{
								corev1.ResourceStorage: resource.MustParse("16Mi")}},
						},
					},
				}
				if _, err := cdi.CdiV1beta1().DataVolumes(ns).Create(ctx, dv, metav1.CreateOptions{}); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	var phases map[v1beta1.DataVolumePhase]int
	for {
		list, err := cdi.CdiV1beta1().DataVolumes(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			b.Fatal(err)
		}
		phases = map[v1beta1.DataVolumePhase]int{}
		for _, dv := range list.Items {
			phases[dv.Status.Phase]++
		}
		if phases[v1beta1.Succeeded]+phases[v1beta1.Failed] == count {
			break
		}
		if ctx.Err() != nil {
			b.Fatalf("not all DataVolumes finished: %v", phases)
		}
		time.Sleep(2 * time.Second)
	}
	took := time.Since(start)
	// Let the last status writes and Job deletions reach the audit log.
	time.Sleep(5 * time.Second)
	writes, err := controllerWrites(cluster.KubeAuditLog, ns)
	if err != nil {
		b.Fatal(err)
	}
	rss := controllerPeakRSS()
	var out strings.Builder
	fmt.Fprintf(&out, "\n%d small imports created at once: %v in %.1f s\n", count, phases, took.Seconds())
	fmt.Fprintf(&out, "  controller peak RSS      %6.1f MiB  (goal < 150 MiB; max of the replicas' VmHWM)\n", float64(rss)/(1<<20))
	total := 0
	for _, n := range writes {
		total += n
	}
	fmt.Fprintf(&out, "  API writes per DataVolume %5.1f      (goal ≤ 15; by the controller, from kube-apiserver's audit log: %v)\n",
		float64(total)/count, writes)
	b.Log(out.String())
	if phases[v1beta1.Succeeded] != count {
		b.Errorf("only %d of %d DataVolumes succeeded", phases[v1beta1.Succeeded], count)
	}
	b.ReportMetric(float64(rss)/(1<<20), "controller-MiB")
	b.ReportMetric(float64(total)/count, "writes/dv")
}

// controllerWrites counts the controller's writes in namespace ns, by
// resource, from an audit log.
func controllerWrites(auditLog, ns string) (map[string]int, error) {
	f, err := os.Open(auditLog)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	counts := map[string]int{}
	scanner := bufio.NewScanner(f)
	scanner.Buffer(make([]byte, 1<<20), 16<<20)
	for scanner.Scan() {
		var e struct {
			Stage string `json:"stage"`
			Verb  string `json:"verb"`
			User  struct {
				Username string `json:"username"`
			} `json:"user"`
			ObjectRef struct {
				Resource, Subresource, Namespace string
			} `json:"objectRef"`
		}
		if json.Unmarshal(scanner.Bytes(), &e) != nil || e.Stage != "ResponseComplete" || e.User.Username != controllerUser || e.ObjectRef.Namespace != ns {
			continue
		}
		switch e.Verb {
		case "create", "update", "patch", "delete":
			r := e.ObjectRef.Resource
			if e.ObjectRef.Subresource != "" {
				r += "/" + e.ObjectRef.Subresource
			}
			counts[e.Verb+" "+r]++
		}
	}
	return counts, scanner.Err()
}

// controllerPeakRSS is the largest VmHWM of the datavolume-controller
// processes on this host.
func controllerPeakRSS() int64 {
	var peak int64
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !strings.HasPrefix(string(cmdline), "/usr/local/bin/datavolume-controller") {
			continue
		}
		status, err := os.ReadFile(filepath.Join("/proc", e.Name(), "status"))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(status), "\n") {
			if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
				kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
				peak = max(peak, kb<<10)
			}
		}
	}
	return peak
}

// jobDone polls a Job: done when Complete, an error when Failed.
func jobDone(ctx context.Context, kube kubernetes.Interface, ns, name string) func() (bool, error) {
	return func() (bool, error) {
		got, err := kube.BatchV1().Jobs(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		for _, c := range got.Status.Conditions {
			if c.Status != corev1.ConditionTrue {
				continue
			}
			switch c.Type {
			case batchv1.JobComplete:
				return true, nil
			case batchv1.JobFailed:
				return false, fmt.Errorf("job %s failed: %s", name, c.Message)
			}
		}
		return false, nil
	}
}

// dataVolumeReady polls a DataVolume: done when Ready, an error when Failed.
func dataVolumeReady(ctx context.Context, cdi cdiclient.Interface, ns, name string) func() (bool, error) {
	return func() (bool, error) {
		got, err := cdi.CdiV1beta1().DataVolumes(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		if got.Status.Phase == v1beta1.Failed {
			return false, fmt.Errorf("DataVolume %s failed: %v", name, got.Status.Conditions)
		}
		for _, c := range got.Status.Conditions {
			if c.Type == v1beta1.DataVolumeReady && c.Status == corev1.ConditionTrue {
				return true, nil
			}
		}
		return false, nil
	}
}
