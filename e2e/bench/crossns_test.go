//go:build e2e

package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/datavolume/datavolume/pkg/apis/cdi/v1beta1"
	cdiclient "github.com/datavolume/datavolume/pkg/generated/clientset/versioned"
)

// BenchmarkCrossNamespaceCloneCreateToReady clones a 2 GiB disk holding
// 1 GiB of data (every other MiB) across namespaces through the whole
// system (grant, permission re-check, copy in the source namespace,
// hand-over), against the same copy run as a hand-written one-pod Job with
// the cloner's image, rounds interleaved; and the copying pod's time
// (running → done) against `cp --sparse=always` + `sync` of the same file
// on this host. Goals: create→Ready ≤ 1.15×; copy ≥ 0.9× cp's speed.
func BenchmarkCrossNamespaceCloneCreateToReady(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	if err := startController(ctx); err != nil {
		b.Fatal(err)
	}
	kube, cdi := clients(b)
	dir := b.TempDir()
	const size = 2 << 30
	if err := writeHalfFullDisk(filepath.Join(dir, "disk.raw"), size); err != nil {
		b.Fatal(err)
	}
	base, stop, err := serveDir(dir)
	if err != nil {
		b.Fatal(err)
	}
	defer stop()
	suffix := time.Now().UnixNano() % 1_000_000
	src, dst := fmt.Sprintf("bench-xsrc-%d", suffix), fmt.Sprintf("bench-xdst-%d", suffix)
	for _, ns := range []string{src, dst} {
		if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
		defer func() { _ = kube.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{}) }()
	}
	// The source, filled once (not measured).
	if _, err := importThroughDataVolume(ctx, kube, cdi, src, "golden", base+"/disk.raw", "2Gi"); err != nil {
		b.Fatal(err)
	}
	_ = os.Remove(filepath.Join(dir, "disk.raw"))

	cpTime, err := copyOnHost(ctx, kube, src, "golden")
	if err != nil {
		b.Fatal(err)
	}

	var ours, theirs, network []timeline
	for round := range *importRounds {
		runOurs := func() error {
			tl, err := cloneThroughDataVolume(ctx, kube, cdi, src, dst, fmt.Sprintf("dv-%d", round), false)
			ours = append(ours, tl)
			return err
		}
		runTheirs := func() error {
			tl, err := cloneThroughJob(ctx, kube, src, fmt.Sprintf("job-%d", round))
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
		// The mutual-TLS fallback, printed beside them.
		tl, err := cloneThroughDataVolume(ctx, kube, cdi, src, dst, fmt.Sprintf("net-%d", round), true)
		if err != nil {
			b.Fatal(err)
		}
		network = append(network, tl)
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
	oursTotal, theirsTotal := med(ours, timeline.total), med(theirs, timeline.total)
	ratio := float64(oursTotal) / float64(theirsTotal)
	oursCopy := med(ours, copying)
	speed := cpTime.Seconds() / oursCopy.Seconds()
	var out strings.Builder
	fmt.Fprintf(&out, "\ncross-namespace clone of a 2 GiB disk (1 GiB data), median of %d rounds:\n", *importRounds)
	fmt.Fprintf(&out, "  create→Ready  DataVolume %8.2f s   hand-written one-pod Job %8.2f s   ratio %5.2f×  (goal ≤ 1.15×)\n",
		oursTotal.Seconds(), theirsTotal.Seconds(), ratio)
	fmt.Fprintf(&out, "  copying pod   DataVolume %8.2f s   Job %8.2f s   cp --sparse=always + sync %8.2f s   speed vs cp %5.2f×  (goal ≥ 0.9×)\n",
		oursCopy.Seconds(), med(theirs, copying).Seconds(), cpTime.Seconds(), speed)
	fmt.Fprintf(&out, "  mutual-TLS fallback (clone-strategy: network): create→Ready %8.2f s (%5.2f× the Job)\n",
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
	fmt.Fprintf(&out, "  %-40s %10s %10s\n", "step (median)", "DataVolume", "Job")
	for _, s := range steps {
		fmt.Fprintf(&out, "  %-40s %9.2fs %9.2fs\n", s.name, med(ours, s.step).Seconds(), med(theirs, s.step).Seconds())
	}
	b.Log(out.String())
	b.ReportMetric(ratio, "ratio")
	b.ReportMetric(speed, "speed-vs-cp")
}

// copyOnHost times cp --sparse=always + sync of the claim's disk image
// into the same filesystem, the floor of a copy on this machine.
func copyOnHost(ctx context.Context, kube kubernetes.Interface, ns, claim string) (time.Duration, error) {
	c, err := kube.CoreV1().PersistentVolumeClaims(ns).Get(ctx, claim, metav1.GetOptions{})
	if err != nil {
		return 0, err
	}
	pv, err := kube.CoreV1().PersistentVolumes().Get(ctx, c.Spec.VolumeName, metav1.GetOptions{})
	if err != nil {
		return 0, err
	}
	if pv.Spec.Local == nil && pv.Spec.HostPath == nil {
		return 0, fmt.Errorf("volume %s has no path on this host", pv.Name)
	}
	path := ""
	if pv.Spec.Local != nil {
		path = pv.Spec.Local.Path
	} else {
		path = pv.Spec.HostPath.Path
	}
	source := filepath.Join(path, "disk.img")
	target := filepath.Join(filepath.Dir(path), "bench-cp-"+claim+".img")
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
	return tl, pollTimeline(ctx, kube, ns, claim, job, &tl, func() (bool, error) {
		got, err := cdi.CdiV1beta1().DataVolumes(dst).Get(ctx, name, metav1.GetOptions{})
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
	})
}

// cloneThroughJob is the baseline: a claim and one pod copying the source
// into it, in the source namespace, with the cloner's image and command.
func cloneThroughJob(ctx context.Context, kube kubernetes.Interface, ns, name string) (timeline, error) {
	var tl timeline
	tl.created = time.Now()
	claim := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{
				corev1.ResourceStorage: resource.MustParse("2168Mi")}},
		},
	}
	if _, err := kube.CoreV1().PersistentVolumeClaims(ns).Create(ctx, claim, metav1.CreateOptions{}); err != nil {
		return tl, err
	}
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: "cloner-" + name, Namespace: ns},
		Spec: batchv1.JobSpec{
			BackoffLimit: ptr.To[int32](0),
			Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
				RestartPolicy: corev1.RestartPolicyNever,
				Containers: []corev1.Container{{
					Name: "cloner", Image: cluster.Image("datavolume-cloner"), ImagePullPolicy: corev1.PullIfNotPresent,
					Args: []string{"clone", "--source=/source/disk.img", "--target=/data/disk.img", "--target-size=2Gi"},
					VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"},
						{Name: "source", MountPath: "/source", ReadOnly: true}},
				}},
				Volumes: []corev1.Volume{
					{Name: "data", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: name}}},
					{Name: "source", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "golden", ReadOnly: true}}},
				},
			}},
		},
	}
	if _, err := kube.BatchV1().Jobs(ns).Create(ctx, job, metav1.CreateOptions{}); err != nil {
		return tl, err
	}
	return tl, pollTimeline(ctx, kube, ns, name, job.Name, &tl, func() (bool, error) {
		got, err := kube.BatchV1().Jobs(ns).Get(ctx, job.Name, metav1.GetOptions{})
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
				return false, fmt.Errorf("job %s failed: %s", job.Name, c.Message)
			}
		}
		return false, nil
	})
}
