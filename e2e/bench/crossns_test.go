//go:build e2e

package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/datavolume/datavolume/pkg/apis/cdi/v1beta1"
	cdiclient "github.com/datavolume/datavolume/pkg/generated/clientset/versioned"
)

// diskShape is one source disk of the cross-namespace clone benchmark.
type diskShape struct {
	name, size  string // the name printed; the DataVolume's size
	bytes, data int64  // the disk's size and how much of it holds data
	write       func(path string, size int64) error
}

// crossNamespaceShapes are the disks the issue names: dense, half-full and
// a large sparse one holding little data.
var crossNamespaceShapes = []diskShape{
	{name: "2 GiB dense", size: "2Gi", bytes: 2 << 30, data: 2 << 30, write: writeDenseDisk},
	{name: "2 GiB half-full", size: "2Gi", bytes: 2 << 30, data: 1 << 30, write: writeHalfFullDisk},
	{name: "10 GiB sparse (100 MiB data)", size: "10Gi", bytes: 10 << 30, data: 100 << 20, write: writeSparseDisk},
}

// BenchmarkCrossNamespaceCloneCreateToReady clones each disk shape across
// namespaces through the whole system (grant, permission re-check, copy in
// the source namespace, hand-over), against the same copy run as a
// hand-written one-pod Job with the cloner's image, rounds interleaved; and
// the copying pod's time (running → done) against `cp --sparse=always` +
// `sync` of the same file on this host. Goals: create→Ready ≤ 1.15×; copy ≥
// 0.9× cp's speed for the dense and half-full disks, and for the sparse one
// ≤ 2× the time of copying its data alone. The mutual-TLS fallback is
// printed beside them, and so is the floor of the copying pod: the same Job
// whose container does nothing (the cloner's --help), so that the pod's own
// cost is told apart from the copy's.
func BenchmarkCrossNamespaceCloneCreateToReady(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Minute)
	defer cancel()
	if err := startController(ctx); err != nil {
		b.Fatal(err)
	}
	var out strings.Builder
	for _, shape := range crossNamespaceShapes {
		if err := benchCrossNamespaceShape(ctx, b, shape, &out); err != nil {
			b.Fatalf("%s: %v", shape.name, err)
		}
	}
	// Not b.Log: without -v the testing package cuts a benchmark's log at ten lines.
	fmt.Print(out.String())
}

func benchCrossNamespaceShape(ctx context.Context, b *testing.B, shape diskShape, out *strings.Builder) error {
	kube, cdi := clients(b)
	dir := b.TempDir()
	raw := filepath.Join(dir, "disk.raw")
	if err := shape.write(raw, shape.bytes); err != nil {
		return err
	}
	// Served as qcow2, so a sparse disk's holes do not cross the wire.
	if out, err := exec.CommandContext(ctx, "qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, filepath.Join(dir, "disk.qcow2")).CombinedOutput(); err != nil {
		return fmt.Errorf("qemu-img: %v %s", err, out)
	}
	_ = os.Remove(raw)
	base, stop, err := serveDir(dir)
	if err != nil {
		return err
	}
	defer stop()
	suffix := time.Now().UnixNano() % 1_000_000
	src, dst := fmt.Sprintf("bench-xsrc-%d", suffix), fmt.Sprintf("bench-xdst-%d", suffix)
	for _, ns := range []string{src, dst} {
		if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			return err
		}
		defer deleteNamespaceAndWait(kube, ns)
	}
	// The source, filled once (not measured).
	if _, err := importThroughDataVolume(ctx, kube, cdi, src, "golden", base+"/disk.qcow2", shape.size); err != nil {
		return err
	}
	_ = os.RemoveAll(dir)
	golden, err := kube.CoreV1().PersistentVolumeClaims(src).Get(ctx, "golden", metav1.GetOptions{})
	if err != nil {
		return err
	}
	cpTime, dataTime, err := copyOnHost(ctx, kube, golden, shape.data)
	if err != nil {
		return err
	}

	var ours, theirs, network, idle []timeline
	for round := range *importRounds {
		runOurs := func() error {
			name := fmt.Sprintf("dv-%d", round)
			tl, err := cloneThroughDataVolume(ctx, kube, cdi, src, dst, name, false)
			ours = append(ours, tl)
			_ = cdi.CdiV1beta1().DataVolumes(dst).Delete(ctx, name, metav1.DeleteOptions{})
			return err
		}
		runTheirs := func() error {
			name := fmt.Sprintf("job-%d", round)
			tl, err := cloneThroughJob(ctx, kube, golden, shape.size, name, false)
			theirs = append(theirs, tl)
			deleteJobAndClaim(ctx, kube, src, name)
			return err
		}
		first, second := runOurs, runTheirs
		if round%2 == 1 {
			first, second = runTheirs, runOurs
		}
		if err := first(); err != nil {
			return err
		}
		if err := second(); err != nil {
			return err
		}
		// The mutual-TLS fallback, printed beside them.
		name := fmt.Sprintf("net-%d", round)
		tl, err := cloneThroughDataVolume(ctx, kube, cdi, src, dst, name, true)
		if err != nil {
			return err
		}
		network = append(network, tl)
		_ = cdi.CdiV1beta1().DataVolumes(dst).Delete(ctx, name, metav1.DeleteOptions{})
		// The floor: the same Job and volumes, a container that does nothing.
		name = fmt.Sprintf("idle-%d", round)
		tl, err = cloneThroughJob(ctx, kube, golden, shape.size, name, true)
		deleteJobAndClaim(ctx, kube, src, name)
		if err != nil {
			return err
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
	copying := func(t timeline) time.Duration { return t.podDone.Sub(t.podRunning) }
	jobToDone := func(t timeline) time.Duration { return t.podDone.Sub(t.jobCreated) }
	oursTotal, theirsTotal := med(ours, timeline.total), med(theirs, timeline.total)
	ratio := float64(oursTotal) / float64(theirsTotal)
	oursCopy := med(ours, copying)
	// A pod that does nothing may be seen Running only briefly, or not at
	// all: Job created → pod done is its whole cost, and what the copying
	// pod takes beyond it is the copy.
	idleRun, idleJob := med(idle, copying), med(idle, jobToDone)
	fmt.Fprintf(out, "\ncross-namespace clone of a %s disk, median of %d rounds:\n", shape.name, *importRounds)
	fmt.Fprintf(out, "  create→Ready  DataVolume %8.2f s   hand-written one-pod Job %8.2f s   ratio %5.2f×  (goal ≤ 1.15×)\n",
		oursTotal.Seconds(), theirsTotal.Seconds(), ratio)
	if shape.data*2 >= shape.bytes {
		speed := cpTime.Seconds() / oursCopy.Seconds()
		fmt.Fprintf(out, "  copying pod   DataVolume %8.2f s   Job %8.2f s   cp --sparse=always + sync %8.2f s   speed vs cp %5.2f×  (goal ≥ 0.9×)\n",
			oursCopy.Seconds(), med(theirs, copying).Seconds(), cpTime.Seconds(), speed)
		b.ReportMetric(speed, "speed-vs-cp-"+strings.Fields(shape.name)[2])
	} else {
		times := oursCopy.Seconds() / dataTime.Seconds()
		fmt.Fprintf(out, "  copying pod   DataVolume %8.2f s   Job %8.2f s   cp --sparse=always + sync of the whole disk %8.2f s\n",
			oursCopy.Seconds(), med(theirs, copying).Seconds(), cpTime.Seconds())
		fmt.Fprintf(out, "                copying its %d MiB of data alone (cp + sync) %8.2f s   DataVolume %5.2f× that  (goal ≤ 2×)\n",
			shape.data>>20, dataTime.Seconds(), times)
		b.ReportMetric(times, "sparse-vs-data")
		if goal := 2 * dataTime; idleRun > goal {
			fmt.Fprintf(out, "                the goal (%.2f s) is below the floor: a do-nothing pod's running→done %.2f s\n", goal.Seconds(), idleRun.Seconds())
		}
	}
	beyond := med(ours, jobToDone) - idleJob
	fmt.Fprintf(out, "  floor: a do-nothing pod (same Job and volumes, cloner --help)   running→done %5.2f s   Job→pod done %5.2f s\n",
		idleRun.Seconds(), idleJob.Seconds())
	fmt.Fprintf(out, "         Job→pod done  DataVolume %5.2f s   Job %5.2f s   beyond the do-nothing pod: DataVolume %5.2f s   Job %5.2f s\n",
		med(ours, jobToDone).Seconds(), med(theirs, jobToDone).Seconds(), beyond.Seconds(), (med(theirs, jobToDone) - idleJob).Seconds())
	b.ReportMetric(idleJob.Seconds(), "idle-pod-s-"+strings.Fields(shape.name)[2])
	fmt.Fprintf(out, "  mutual-TLS fallback (clone-strategy: network): create→Ready %8.2f s (%5.2f× the Job)\n",
		med(network, timeline.total).Seconds(), float64(med(network, timeline.total))/float64(theirsTotal))
	steps := []struct {
		name string
		step func(timeline) time.Duration
	}{
		{"claim (create → temporary claim)", func(t timeline) time.Duration { return t.claimCreated.Sub(t.created) }},
		{"Job (claim → Job created)", func(t timeline) time.Duration { return t.jobCreated.Sub(t.claimCreated) }},
		{"pod start (Job → pod running)", func(t timeline) time.Duration { return t.podRunning.Sub(t.jobCreated) }},
		{"copy (pod running → pod done)", copying},
		{"hand-over + status (pod done → Ready)", func(t timeline) time.Duration { return t.ready.Sub(t.podDone) }},
	}
	fmt.Fprintf(out, "  %-40s %10s %10s\n", "step (median)", "DataVolume", "Job")
	for _, s := range steps {
		fmt.Fprintf(out, "  %-40s %9.2fs %9.2fs\n", s.name, med(ours, s.step).Seconds(), med(theirs, s.step).Seconds())
	}
	b.ReportMetric(ratio, "ratio-"+strings.Fields(shape.name)[2])
	return nil
}

// writeDenseDisk writes size bytes of pseudo-random data.
func writeDenseDisk(path string, size int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	rng := rand.NewChaCha8([32]byte{2})
	buf := make([]byte, 4<<20)
	for off := int64(0); off < size; off += int64(len(buf)) {
		_, _ = rng.Read(buf)
		if _, err := f.WriteAt(buf[:min(int64(len(buf)), size-off)], off); err != nil {
			return err
		}
	}
	return f.Close()
}

// writeSparseDisk writes 100 MiB of data as 1 MiB pieces spread evenly
// over a disk of size bytes; the rest is holes.
func writeSparseDisk(path string, size int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	rng := rand.NewChaCha8([32]byte{3})
	buf := make([]byte, 1<<20)
	const pieces = 100
	for i := range int64(pieces) {
		_, _ = rng.Read(buf)
		if _, err := f.WriteAt(buf, i*(size/pieces)); err != nil {
			return err
		}
	}
	if err := f.Truncate(size); err != nil {
		return err
	}
	return f.Close()
}

// deleteNamespaceAndWait deletes ns and waits for it to be gone, so the
// next shape's disks do not share the machine with this one's deletion.
func deleteNamespaceAndWait(kube kubernetes.Interface, ns string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	_ = kube.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{})
	for ctx.Err() == nil {
		if _, err := kube.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); err != nil {
			return
		}
		time.Sleep(time.Second)
	}
}

// copyOnHost times cp --sparse=always + sync of the claim's disk image
// into the same filesystem, the floor of a copy on this machine; and the
// same for a dense file of data bytes alone (the floor of a sparse disk's
// copy: its data, with nothing to skip).
func copyOnHost(ctx context.Context, kube kubernetes.Interface, c *corev1.PersistentVolumeClaim, data int64) (whole, dataAlone time.Duration, err error) {
	pv, err := kube.CoreV1().PersistentVolumes().Get(ctx, c.Spec.VolumeName, metav1.GetOptions{})
	if err != nil {
		return 0, 0, err
	}
	if pv.Spec.Local == nil && pv.Spec.HostPath == nil {
		return 0, 0, fmt.Errorf("volume %s has no path on this host", pv.Name)
	}
	path := ""
	if pv.Spec.Local != nil {
		path = pv.Spec.Local.Path
	} else {
		path = pv.Spec.HostPath.Path
	}
	timeCopy := func(source, target string) (time.Duration, error) {
		defer os.Remove(target)
		_ = exec.Command("sync").Run()
		start := time.Now()
		if out, err := exec.CommandContext(ctx, "cp", "--sparse=always", source, target).CombinedOutput(); err != nil {
			return 0, fmt.Errorf("cp: %v %s", err, out)
		}
		if out, err := exec.CommandContext(ctx, "sync", target).CombinedOutput(); err != nil {
			return 0, fmt.Errorf("sync: %v %s", err, out)
		}
		return time.Since(start), nil
	}
	if whole, err = timeCopy(filepath.Join(path, "disk.img"), filepath.Join(filepath.Dir(path), "bench-cp-"+c.Name+".img")); err != nil {
		return 0, 0, err
	}
	dense := filepath.Join(filepath.Dir(path), "bench-data-"+c.Name+".img")
	defer os.Remove(dense)
	if err := writeDenseDisk(dense, data); err != nil {
		return 0, 0, err
	}
	if dataAlone, err = timeCopy(dense, dense+".copy"); err != nil {
		return 0, 0, err
	}
	return whole, dataAlone, nil
}

// cloneThroughDataVolume creates a cross-namespace clone DataVolume (as the
// admin, allowed everywhere) and polls its copy in the source namespace
// until the DataVolume is Ready.
func cloneThroughDataVolume(ctx context.Context, kube kubernetes.Interface, cdi cdiclient.Interface, src, dst, name string, overNetwork bool) (timeline, error) {
	dv := &v1beta1.DataVolume{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: dst},
		Spec: v1beta1.DataVolumeSpec{
			Source: &v1beta1.DataVolumeSource{PVC: &v1beta1.DataVolumeSourcePVC{Namespace: src, Name: "golden"}},
			// No size: the source's, filled in at create (the usual clone).
			Storage: &v1beta1.StorageSpec{},
		},
	}
	if overNetwork {
		dv.Annotations = map[string]string{"datavolume.cdi.kubevirt.io/clone-strategy": "network"}
	}
	var tl timeline
	tl.created = time.Now()
	created, err := cdi.CdiV1beta1().DataVolumes(dst).Create(ctx, dv, metav1.CreateOptions{})
	if err != nil {
		return tl, err
	}
	uid := string(created.UID)
	ns, claim, job := src, "clone-tmp-"+uid, "cloner-"+uid
	if overNetwork {
		ns, claim, job = dst, name, "clone-target-"+name
	}
	return tl, pollTimeline(ctx, kube, ns, claim, job, &tl, dataVolumeReady(ctx, cdi, dst, name))
}

// deleteJobAndClaim deletes what cloneThroughJob made, without waiting.
func deleteJobAndClaim(ctx context.Context, kube kubernetes.Interface, ns, name string) {
	background := metav1.DeletePropagationBackground
	_ = kube.BatchV1().Jobs(ns).Delete(ctx, "cloner-"+name, metav1.DeleteOptions{PropagationPolicy: &background})
	_ = kube.CoreV1().PersistentVolumeClaims(ns).Delete(ctx, name, metav1.DeleteOptions{})
}

// cloneThroughJob is the baseline: a claim and one pod copying the source
// into it, in the source namespace, with the cloner's image and command;
// with doNothing, the same pod whose container only prints its help.
func cloneThroughJob(ctx context.Context, kube kubernetes.Interface, golden *corev1.PersistentVolumeClaim, size, name string, doNothing bool) (timeline, error) {
	ns := golden.Namespace
	var tl timeline
	tl.created = time.Now()
	claim := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{
				corev1.ResourceStorage: golden.Spec.Resources.Requests[corev1.ResourceStorage]}},
		},
	}
	if _, err := kube.CoreV1().PersistentVolumeClaims(ns).Create(ctx, claim, metav1.CreateOptions{}); err != nil {
		return tl, err
	}
	args := []string{"clone", "--source=/source/disk.img", "--target=/data/disk.img", "--target-size=" + size}
	if doNothing {
		args = []string{"--help"}
	}
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: "cloner-" + name, Namespace: ns},
		Spec: batchv1.JobSpec{
			BackoffLimit: ptr.To[int32](0),
			Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
				RestartPolicy: corev1.RestartPolicyNever,
				Containers: []corev1.Container{{
					Name: "cloner", Image: cluster.Image("datavolume-cloner"), ImagePullPolicy: corev1.PullIfNotPresent,
					Args: args,
					VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"},
						{Name: "source", MountPath: "/source", ReadOnly: true}},
				}},
				Volumes: []corev1.Volume{
					{Name: "data", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: name}}},
					{Name: "source", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: golden.Name, ReadOnly: true}}},
				},
			}},
		},
	}
	if _, err := kube.BatchV1().Jobs(ns).Create(ctx, job, metav1.CreateOptions{}); err != nil {
		return tl, err
	}
	return tl, pollTimeline(ctx, kube, ns, name, job.Name, &tl, jobDone(ctx, kube, ns, job.Name))
}
