package controller

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	kubeinformers "k8s.io/client-go/informers"
	kubefake "k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/ptr"

	"github.com/datavolume/datavolume/pkg/apis/cdi/v1beta1"
	cdifake "github.com/datavolume/datavolume/pkg/generated/clientset/versioned/fake"
	cdiinformers "github.com/datavolume/datavolume/pkg/generated/informers/externalversions"
)

// harness drives sync by hand: objects go into the informers' caches and
// the fake clients, and each sync's writes are read back from the fakes.
type harness struct {
	t        *testing.T
	c        *Controller
	kube     *kubefake.Clientset
	cdi      *cdifake.Clientset
	kinf     kubeinformers.SharedInformerFactory
	dinf     cdiinformers.SharedInformerFactory
	recorder *record.FakeRecorder
}

func newHarness(t *testing.T, dvs ...*v1beta1.DataVolume) *harness {
	t.Helper()
	var objs []runtime.Object
	for _, dv := range dvs {
		objs = append(objs, dv)
	}
	h := &harness{t: t, kube: kubefake.NewClientset(), cdi: cdifake.NewSimpleClientset(objs...), recorder: record.NewFakeRecorder(100)}
	h.kinf = kubeinformers.NewSharedInformerFactory(h.kube, 0)
	h.dinf = cdiinformers.NewSharedInformerFactory(h.cdi, 0)
	c, err := New(h.kube, h.cdi, testScheme(), h.recorder, Informers{
		DataVolumes:    h.dinf.Cdi().V1beta1().DataVolumes(),
		Claims:         h.kinf.Core().V1().PersistentVolumeClaims(),
		Jobs:           h.kinf.Batch().V1().Jobs(),
		Pods:           h.kinf.Core().V1().Pods(),
		StorageClasses: h.kinf.Storage().V1().StorageClasses(),
	}, Options{Jobs: testJobOptions})
	assert.NilError(t, err)
	c.now = func() metav1.Time { return metav1.Unix(1000, 0) }
	h.c = c
	for _, dv := range dvs {
		h.cache(dv)
	}
	return h
}

// cache puts obj into the informer cache of its kind.
func (h *harness) cache(obj runtime.Object) {
	var err error
	switch o := obj.(type) {
	case *v1beta1.DataVolume:
		err = h.dinf.Cdi().V1beta1().DataVolumes().Informer().GetIndexer().Update(o)
	case *corev1.PersistentVolumeClaim:
		err = h.kinf.Core().V1().PersistentVolumeClaims().Informer().GetIndexer().Update(o)
	case *batchv1.Job:
		err = h.kinf.Batch().V1().Jobs().Informer().GetIndexer().Update(o)
	case *corev1.Pod:
		err = h.kinf.Core().V1().Pods().Informer().GetIndexer().Update(o)
	}
	assert.NilError(h.t, err)
}

func (h *harness) sync(dv *v1beta1.DataVolume) {
	h.t.Helper()
	_, err := h.c.sync(context.Background(), dv.Namespace+"/"+dv.Name)
	assert.NilError(h.t, err)
	stored, err := h.cdi.CdiV1beta1().DataVolumes(dv.Namespace).Get(context.Background(), dv.Name, metav1.GetOptions{})
	assert.NilError(h.t, err)
	h.cache(stored)
	// What the sync created reaches the caches, as the informers would.
	claims, err := h.kube.CoreV1().PersistentVolumeClaims("").List(context.Background(), metav1.ListOptions{})
	assert.NilError(h.t, err)
	for i := range claims.Items {
		h.cache(&claims.Items[i])
	}
}

// add creates obj (a claim or a Job) in the fake API and the cache.
func (h *harness) add(obj runtime.Object) {
	h.t.Helper()
	var err error
	switch o := obj.(type) {
	case *corev1.PersistentVolumeClaim:
		_, err = h.kube.CoreV1().PersistentVolumeClaims(o.Namespace).Create(context.Background(), o, metav1.CreateOptions{})
	case *batchv1.Job:
		_, err = h.kube.BatchV1().Jobs(o.Namespace).Create(context.Background(), o, metav1.CreateOptions{})
	}
	assert.NilError(h.t, err)
	h.cache(obj)
}

func (h *harness) dv(name string) *v1beta1.DataVolume {
	dv, err := h.cdi.CdiV1beta1().DataVolumes("ns").Get(context.Background(), name, metav1.GetOptions{})
	assert.NilError(h.t, err)
	return dv
}

func (h *harness) actions(verb, resource string) []clienttesting.Action {
	var out []clienttesting.Action
	for _, a := range h.kube.Actions() {
		if a.GetVerb() == verb && a.GetResource().Resource == resource {
			out = append(out, a)
		}
	}
	return out
}

func (h *harness) events() []string {
	var out []string
	for {
		select {
		case e := <-h.recorder.Events:
			out = append(out, e)
		default:
			return out
		}
	}
}

func TestSyncImportsThroughAClaimAndAJob(t *testing.T) {
	dv := importDV("disk")
	h := newHarness(t, dv)

	h.sync(dv)
	claim, err := h.kube.CoreV1().PersistentVolumeClaims("ns").Get(context.Background(), "disk", metav1.GetOptions{})
	assert.NilError(t, err, "the claim is created")
	assert.Assert(t, ownedBy(claim, dv))
	job, err := h.kube.BatchV1().Jobs("ns").Get(context.Background(), "importer-disk", metav1.GetOptions{})
	assert.NilError(t, err, "the Job is created in the same sync")
	assert.Equal(t, job.Labels[LabelDataVolumeUID], "uid-disk")
	assert.Equal(t, h.dv("disk").Status.Phase, v1beta1.ImportScheduled)

	// A second sync with everything cached creates nothing more.
	claim.Status.Phase = corev1.ClaimBound
	h.cache(claim)
	h.cache(job)
	h.sync(dv)
	assert.Equal(t, len(h.actions("create", "persistentvolumeclaims")), 1)
	assert.Equal(t, len(h.actions("create", "jobs")), 1)

	// The Job completes: Succeeded, the claim annotated, the Job deleted.
	job.Status.Conditions = []batchv1.JobCondition{{Type: batchv1.JobComplete, Status: corev1.ConditionTrue}}
	h.cache(job)
	h.sync(dv)
	got := h.dv("disk")
	assert.Equal(t, got.Status.Phase, v1beta1.Succeeded)
	assert.Equal(t, got.Status.Progress, v1beta1.DataVolumeProgress("100.0%"))
	assert.Equal(t, len(h.actions("delete", "jobs")), 1)
	claim, err = h.kube.CoreV1().PersistentVolumeClaims("ns").Get(context.Background(), "disk", metav1.GetOptions{})
	assert.NilError(t, err)
	assert.Equal(t, claim.Annotations[AnnPodPhase], "Succeeded")
	// Writes are counted (issue 16: ≤ 15 per DataVolume): the claim is
	// annotated once, at the end; the Job deleted once, though the cache
	// still has it.
	assert.Equal(t, len(h.actions("update", "persistentvolumeclaims")), 1)
	h.sync(dv)
	assert.Equal(t, len(h.actions("delete", "jobs")), 1)
	events := strings.Join(h.events(), "\n")
	assert.Assert(t, strings.Contains(events, "Normal ImportScheduled Import into disk scheduled"), events)
	assert.Assert(t, strings.Contains(events, "Normal ImportSucceeded Successfully imported into PVC disk"), events)
}

// The claim's annotation is written even when the write right after
// Succeeded fails (a conflict: the cache lagged behind the claim): the
// retry finds the DataVolume Succeeded and writes it then, once.
func TestSyncAnnotatesTheClaimOnTheRetryAfterSucceeded(t *testing.T) {
	dv := importDV("disk")
	h := newHarness(t, dv)
	claim := boundClaim(dv, "1Gi", corev1.PersistentVolumeFilesystem)
	h.add(claim)
	job := jobWith("importer-disk", batchv1.JobComplete)
	job.Labels = map[string]string{LabelDataVolumeUID: "uid-disk"}
	h.add(job)
	conflicts := 1
	h.kube.PrependReactor("update", "persistentvolumeclaims", func(clienttesting.Action) (bool, runtime.Object, error) {
		if conflicts > 0 {
			conflicts--
			return true, nil, apierrors.NewConflict(corev1.Resource("persistentvolumeclaims"), "disk", errors.New("the object has been modified"))
		}
		return false, nil, nil
	})

	_, err := h.c.sync(context.Background(), "ns/disk")
	assert.ErrorContains(t, err, "annotating PersistentVolumeClaim ns/disk")
	succeeded := h.dv("disk")
	assert.Equal(t, succeeded.Status.Phase, v1beta1.Succeeded)
	h.cache(succeeded) // the informer brings the Succeeded DataVolume back

	h.sync(dv)
	got, err := h.kube.CoreV1().PersistentVolumeClaims("ns").Get(context.Background(), "disk", metav1.GetOptions{})
	assert.NilError(t, err)
	assert.Equal(t, got.Annotations[AnnPodPhase], "Succeeded")
	h.sync(dv)
	assert.Equal(t, len(h.actions("update", "persistentvolumeclaims")), 2, "one conflict, one write, then none")
}

func TestSyncRerunsWithScratchWhenTheClonerAsks(t *testing.T) {
	dv := importDV("disk")
	h := newHarness(t, dv)
	h.add(boundClaim(dv, "1Gi", corev1.PersistentVolumeFilesystem))
	job := jobWith("importer-disk", batchv1.JobFailed)
	job.Labels = map[string]string{LabelDataVolumeUID: "uid-disk"}
	h.add(job)
	h.cache(failedPod("importer-disk", 4, `{"outcome":"Failed","exitCode":4,"reason":"NeedsScratch","message":"scratch space required"}`))

	_, err := h.c.sync(context.Background(), "ns/disk")
	assert.NilError(t, err)
	assert.Equal(t, h.dv("disk").Status.Phase, v1beta1.ImportScheduled, "not Failed")
	assert.Equal(t, len(h.actions("delete", "jobs")), 1)
	marked, err := h.kube.CoreV1().PersistentVolumeClaims("ns").Get(context.Background(), "disk", metav1.GetOptions{})
	assert.NilError(t, err)
	assert.Equal(t, marked.Annotations[AnnRequiresScratch], "true")

	// With the mark cached, the next sync runs the import with scratch.
	h.cache(marked)
	assert.NilError(t, h.kinf.Batch().V1().Jobs().Informer().GetIndexer().Delete(job))
	h.sync(dv)
	rerun, err := h.kube.BatchV1().Jobs("ns").Get(context.Background(), "importer-scratch-disk", metav1.GetOptions{})
	assert.NilError(t, err)
	assert.Assert(t, strings.Contains(strings.Join(rerun.Spec.Template.Spec.Containers[0].Args, " "), "--scratch=/scratch"))
}

func TestSyncLeavesAForeignClaimAlone(t *testing.T) {
	dv := importDV("disk")
	h := newHarness(t, dv)
	foreign := boundClaim(importDV("other"), "1Gi", corev1.PersistentVolumeFilesystem)
	foreign.Name = "disk"
	h.cache(foreign)
	h.sync(dv)
	assert.Equal(t, len(h.actions("create", "jobs")), 0)
	assert.Equal(t, len(h.actions("update", "persistentvolumeclaims")), 0)
	assert.Equal(t, findCondition(h.dv("disk").Status.Conditions, v1beta1.DataVolumeBound).Reason, "ErrResourceExists")
}

func TestSyncWaitsWhileTheCloneSourceIsInUse(t *testing.T) {
	source := boundClaim(importDV("disk"), "1Gi", corev1.PersistentVolumeFilesystem)
	source.OwnerReferences = nil
	dv := cloneDV("copy", "disk")
	h := newHarness(t, dv)
	h.cache(source)
	user := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "virt-launcher-vm", Namespace: "ns"},
		Spec: corev1.PodSpec{Volumes: []corev1.Volume{{Name: "d", VolumeSource: corev1.VolumeSource{
			PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "disk"}}}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning},
	}
	h.cache(user)
	h.sync(dv)
	assert.Equal(t, len(h.actions("create", "jobs")), 0, "no Job while the source is in use")
	got := h.dv("copy")
	assert.Equal(t, got.Status.Phase, v1beta1.CloneScheduled)
	running := findCondition(got.Status.Conditions, v1beta1.DataVolumeRunning)
	assert.Equal(t, running.Reason, "CloneSourceInUse")
	assert.Equal(t, running.Message, "pod ns/virt-launcher-vm using PersistentVolumeClaim disk")

	// Released: the clone proceeds by itself.
	user.Status.Phase = corev1.PodSucceeded
	h.cache(user)
	h.sync(dv)
	assert.Equal(t, len(h.actions("create", "jobs")), 1)
}

func TestProgressIsReadWhileRunning(t *testing.T) {
	dv := importDV("disk")
	h := newHarness(t, dv)
	h.c.opts.ProgressEvery = time.Second
	h.add(boundClaim(dv, "1Gi", corev1.PersistentVolumeFilesystem))
	job := jobWith("importer-disk")
	job.Labels = map[string]string{LabelDataVolumeUID: "uid-disk"}
	h.add(job)
	pod := runningPod("importer-disk")
	pod.Status.PodIP = "127.0.0.1"
	h.cache(pod)
	requeue, err := h.c.sync(context.Background(), "ns/disk")
	assert.NilError(t, err)
	assert.Equal(t, requeue, time.Second, "a running transfer is looked at again")
	assert.Equal(t, h.dv("disk").Status.Phase, v1beta1.ImportInProgress)
}

func TestProgressIsReadOncePerProgressEvery(t *testing.T) {
	// The cloner's progress moves on every read.
	var reads atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "kubevirt_cdi_import_progress_total{ownerUID=\"uid-disk\"} %d\n", 10*reads.Add(1))
	}))
	defer srv.Close()
	port, err := strconv.Atoi(srv.URL[strings.LastIndex(srv.URL, ":")+1:])
	assert.NilError(t, err)

	dv := importDV("disk")
	h := newHarness(t, dv)
	h.c.opts.ProgressEvery = 20 * time.Millisecond
	h.c.progress = newProgressReader(int32(port))
	h.add(boundClaim(dv, "1Gi", corev1.PersistentVolumeFilesystem))
	job := jobWith("importer-disk")
	job.Labels = map[string]string{LabelDataVolumeUID: "uid-disk"}
	h.add(job)
	pod := runningPod("importer-disk")
	pod.UID, pod.Status.PodIP = "uid-pod", "127.0.0.1"
	h.cache(pod)
	statusWrites := func() int {
		n := 0
		for _, a := range h.cdi.Actions() {
			if a.GetVerb() == "update" && a.GetSubresource() == "status" {
				n++
			}
		}
		return n
	}

	h.sync(dv)
	assert.Equal(t, h.dv("disk").Status.Progress, v1beta1.DataVolumeProgress("10.00%"))
	writes := statusWrites()
	// The status write brings the DataVolume back at once: no read, no write.
	h.sync(dv)
	assert.Equal(t, reads.Load(), int64(1))
	assert.Equal(t, statusWrites(), writes)
	assert.Equal(t, h.dv("disk").Status.Progress, v1beta1.DataVolumeProgress("10.00%"))

	time.Sleep(100 * time.Millisecond)
	h.sync(dv)
	assert.Equal(t, reads.Load(), int64(2))
	assert.Equal(t, h.dv("disk").Status.Progress, v1beta1.DataVolumeProgress("20.00%"))
}

func TestHonoredWaitForFirstConsumerHoldsTheJob(t *testing.T) {
	dv := importDV("disk")
	h := newHarness(t, dv)
	h.c.opts.HonorWaitForFirstConsumer = true
	wffc := storagev1.VolumeBindingWaitForFirstConsumer
	class := &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "local"}, VolumeBindingMode: &wffc}
	assert.NilError(t, h.kinf.Storage().V1().StorageClasses().Informer().GetIndexer().Add(class))
	claim := boundClaim(dv, "1Gi", corev1.PersistentVolumeFilesystem)
	claim.Status.Phase = corev1.ClaimPending
	claim.Spec.StorageClassName = ptr.To("local")
	h.add(claim)

	h.sync(dv)
	assert.Equal(t, h.dv("disk").Status.Phase, v1beta1.WaitForFirstConsumer)
	assert.Equal(t, len(h.actions("create", "jobs")), 0, "nothing consumes the claim yet")

	// Asked to bind at once, it goes on.
	dv = h.dv("disk")
	dv.Annotations = map[string]string{AnnImmediateBinding: "true"}
	h.cache(dv)
	_, err := h.c.sync(context.Background(), "ns/disk")
	assert.NilError(t, err)
	assert.Equal(t, len(h.actions("create", "jobs")), 1)
}

func TestNoJobFromAStaleCache(t *testing.T) {
	dv := importDV("disk")
	h := newHarness(t, dv)
	h.add(boundClaim(dv, "1Gi", corev1.PersistentVolumeFilesystem))
	// The API has moved on (the status says Succeeded); the cache has not.
	stored := dv.DeepCopy()
	stored.ResourceVersion = "2"
	stored.Status.Phase = v1beta1.Succeeded
	assert.NilError(t, h.cdi.Tracker().Update(v1beta1.SchemeGroupVersion.WithResource("datavolumes"), stored, "ns"))
	requeue, err := h.c.sync(context.Background(), "ns/disk")
	assert.NilError(t, err)
	assert.Equal(t, requeue, time.Second)
	assert.Equal(t, len(h.actions("create", "jobs")), 0, "no second writer")
}

// A Job already being deleted (by this replica before a restart, or by the
// other before a leader change) gets no second DELETE.
func TestNoSecondDeleteOfAJobBeingDeleted(t *testing.T) {
	dv := importDV("disk")
	h := newHarness(t, dv)
	h.sync(dv)
	claim, err := h.kube.CoreV1().PersistentVolumeClaims("ns").Get(context.Background(), "disk", metav1.GetOptions{})
	assert.NilError(t, err)
	claim.Status.Phase = corev1.ClaimBound
	h.cache(claim)
	job, err := h.kube.BatchV1().Jobs("ns").Get(context.Background(), "importer-disk", metav1.GetOptions{})
	assert.NilError(t, err)
	job.Status.Conditions = []batchv1.JobCondition{{Type: batchv1.JobComplete, Status: corev1.ConditionTrue}}
	now := metav1.Now()
	job.DeletionTimestamp = &now
	h.cache(job)
	h.sync(dv)
	assert.Equal(t, h.dv("disk").Status.Phase, v1beta1.Succeeded)
	assert.Equal(t, len(h.actions("delete", "jobs")), 0)
}
