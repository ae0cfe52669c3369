package controller

import (
	"testing"

	"gotest.tools/v3/assert"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/datavolume/datavolume/pkg/apis/cdi/v1beta1"
	"github.com/datavolume/datavolume/pkg/cloner/exitcode"
)

func observe(dv *v1beta1.DataVolume) *observation {
	_, p := planOf(dv)
	return &observation{dv: dv, plan: p, now: metav1.Now()}
}

func condition(st v1beta1.DataVolumeStatus, t v1beta1.DataVolumeConditionType) v1beta1.DataVolumeCondition {
	if c := findCondition(st.Conditions, t); c != nil {
		return *c
	}
	return v1beta1.DataVolumeCondition{}
}

func reasons(events []event) []string {
	var out []string
	for _, e := range events {
		out = append(out, e.eventType+" "+e.reason)
	}
	return out
}

func TestImportPhasesFollowTheJob(t *testing.T) {
	dv := importDV("disk")
	claim := boundClaim(dv, "1Gi", corev1.PersistentVolumeFilesystem)

	// Claim made, Job about to run.
	o := observe(dv)
	o.claim = claim
	st, events := desiredStatus(o)
	assert.Equal(t, st.Phase, v1beta1.ImportScheduled)
	assert.Equal(t, st.Progress, v1beta1.ProgressNotAvailable)
	assert.Equal(t, st.ClaimName, "disk")
	assert.Equal(t, condition(st, v1beta1.DataVolumeBound).Status, corev1.ConditionTrue)
	assert.Equal(t, condition(st, v1beta1.DataVolumeBound).Message, "PVC disk Bound")
	assert.DeepEqual(t, reasons(events), []string{"Normal ImportScheduled", "Normal Bound"})
	assert.Equal(t, events[0].message, "Import into disk scheduled")

	// The pod runs and reports progress.
	dv.Status = st
	o = observe(dv)
	o.claim, o.job, o.pod, o.progress = claim, jobWith("importer-disk"), runningPod("importer-disk"), "45.12%"
	st, events = desiredStatus(o)
	assert.Equal(t, st.Phase, v1beta1.ImportInProgress)
	assert.Equal(t, st.Progress, v1beta1.DataVolumeProgress("45.12%"))
	running := condition(st, v1beta1.DataVolumeRunning)
	assert.Equal(t, running.Status, corev1.ConditionTrue)
	assert.Equal(t, running.Reason, "Pod is running")
	assert.Equal(t, condition(st, v1beta1.DataVolumeReady).Reason, "TransferRunning")
	assert.DeepEqual(t, reasons(events), []string{"Normal ImportInProgress"})

	// The pod is done before the Job says so: nothing to write, no phase
	// back to ImportScheduled.
	dv.Status = st
	o = observe(dv)
	done := runningPod("importer-disk")
	done.Status.Phase = corev1.PodSucceeded
	done.Status.ContainerStatuses[0].State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0}}
	o.claim, o.job, o.pod = claim, jobWith("importer-disk"), done
	finishing, events := desiredStatus(o)
	assert.DeepEqual(t, finishing, st)
	assert.Equal(t, len(events), 0)

	// The Job completes.
	dv.Status = st
	o = observe(dv)
	o.claim, o.job = claim, jobWith("importer-disk", batchv1.JobComplete)
	st, events = desiredStatus(o)
	assert.Equal(t, st.Phase, v1beta1.Succeeded)
	assert.Equal(t, st.Progress, v1beta1.DataVolumeProgress("100.0%"))
	assert.Equal(t, condition(st, v1beta1.DataVolumeReady).Status, corev1.ConditionTrue)
	assert.Equal(t, condition(st, v1beta1.DataVolumeRunning).Reason, "Completed")
	assert.DeepEqual(t, reasons(events), []string{"Normal ImportSucceeded"})
	assert.Equal(t, events[0].message, "Successfully imported into PVC disk")

	// Nothing changes it afterwards, not even a Job gone missing.
	dv.Status = st
	o = observe(dv)
	o.claim = claim
	again, events := desiredStatus(o)
	assert.DeepEqual(t, again, st)
	assert.Equal(t, len(events), 0)
}

func TestRetriedFailureIsCountedAndShown(t *testing.T) {
	dv := importDV("disk")
	dv.Status.Phase = v1beta1.ImportInProgress
	o := observe(dv)
	o.claim = boundClaim(dv, "1Gi", corev1.PersistentVolumeFilesystem)
	o.job = jobWith("importer-disk")
	o.job.Status.Failed = 1
	o.pod = failedPod("importer-disk", 1, "")
	o.failure = &exitcode.Termination{ExitCode: 1, Reason: "NotFound", Message: "GET from images.example: 404 Not Found"}
	st, events := desiredStatus(o)
	assert.Equal(t, st.Phase, v1beta1.ImportInProgress, "a retried failure keeps the phase")
	assert.Equal(t, st.RestartCount, int32(1))
	running := condition(st, v1beta1.DataVolumeRunning)
	assert.Equal(t, running.Status, corev1.ConditionFalse)
	assert.Equal(t, running.Reason, "Error")
	assert.Equal(t, running.Message, "GET from images.example: 404 Not Found")
	assert.DeepEqual(t, reasons(events), []string{"Normal Bound", "Warning Error"})
}

func TestPermanentFailureFailsWithTheClonerMessage(t *testing.T) {
	dv := importDV("disk")
	dv.Status.Phase = v1beta1.ImportInProgress
	o := observe(dv)
	o.claim = boundClaim(dv, "1Gi", corev1.PersistentVolumeFilesystem)
	o.job = jobWith("importer-disk", batchv1.JobFailed)
	o.failure = &exitcode.Termination{ExitCode: 3, Reason: "ChecksumMismatch", Message: "checksum mismatch: want sha256:aa, got sha256:bb"}
	o.job.Status.Failed = 1
	st, events := desiredStatus(o)
	assert.Equal(t, st.Phase, v1beta1.Failed)
	assert.Equal(t, st.RestartCount, int32(0), "the failure that failed the Job was not retried")
	assert.Equal(t, condition(st, v1beta1.DataVolumeRunning).Message, "checksum mismatch: want sha256:aa, got sha256:bb")
	assert.Equal(t, condition(st, v1beta1.DataVolumeReady).Status, corev1.ConditionFalse)
	assert.Equal(t, events[0].reason, "ImportFailed")
	assert.Equal(t, events[0].message, "Failed to import into PVC disk: checksum mismatch: want sha256:aa, got sha256:bb")
}

func TestClaimThatIsNotOursIsReported(t *testing.T) {
	o := observe(importDV("disk"))
	o.foreignClaim = true
	st, events := desiredStatus(o)
	assert.Equal(t, st.Phase, v1beta1.Pending)
	bound := condition(st, v1beta1.DataVolumeBound)
	assert.Equal(t, bound.Reason, "ErrResourceExists")
	assert.Equal(t, bound.Message, `Resource "disk" already exists and is not managed by DataVolume`)
	assert.DeepEqual(t, reasons(events), []string{"Warning ErrResourceExists"})
}

func TestCloneWaitsForItsSource(t *testing.T) {
	dv := cloneDV("copy", "disk")
	o := observe(dv)
	o.claim = boundClaim(dv, "1Gi", corev1.PersistentVolumeFilesystem)
	o.wait = &waiting{phase: v1beta1.CloneScheduled, reason: ReasonCloneSourceInUse, message: "pod ns/vm-launcher using PersistentVolumeClaim disk"}
	st, events := desiredStatus(o)
	assert.Equal(t, st.Phase, v1beta1.CloneScheduled)
	assert.Equal(t, condition(st, v1beta1.DataVolumeRunning).Reason, "CloneSourceInUse")
	assert.DeepEqual(t, reasons(events), []string{"Normal CloneScheduled", "Normal Bound", "Normal CloneSourceInUse"})
	assert.Equal(t, events[0].message, "Cloning from ns/disk into ns/copy scheduled")
}

func TestImagePullFailureIsNamed(t *testing.T) {
	dv := importDV("disk")
	o := observe(dv)
	o.claim = boundClaim(dv, "1Gi", corev1.PersistentVolumeFilesystem)
	o.job = jobWith("importer-disk")
	o.pod = runningPod("importer-disk")
	o.pod.Status.Phase = corev1.PodPending
	o.pod.Status.ContainerStatuses[0].Image = "cloner:v1"
	o.pod.Status.ContainerStatuses[0].State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ErrImagePull"}}
	st, _ := desiredStatus(o)
	assert.Equal(t, st.Phase, v1beta1.ImportScheduled)
	assert.Equal(t, condition(st, v1beta1.DataVolumeRunning).Reason, "ImagePullFailed")
	assert.Equal(t, condition(st, v1beta1.DataVolumeRunning).Message, "failed to pull image: cloner:v1")
}

func TestSetConditionMovesTransitionTimeOnlyOnStatusChange(t *testing.T) {
	t0 := metav1.Unix(100, 0)
	t1 := metav1.Unix(200, 0)
	conds := setCondition(nil, v1beta1.DataVolumeRunning, corev1.ConditionFalse, "A", "", t0)
	conds = setCondition(conds, v1beta1.DataVolumeRunning, corev1.ConditionFalse, "B", "m", t1)
	assert.Equal(t, conds[0].LastTransitionTime, t0)
	assert.Equal(t, conds[0].LastHeartbeatTime, t1)
	conds = setCondition(conds, v1beta1.DataVolumeRunning, corev1.ConditionTrue, "C", "", t1)
	assert.Equal(t, conds[0].LastTransitionTime, t1)
	assert.Equal(t, len(conds), 1)
}

func TestTerminationSummaryFallsBackToTheLogTail(t *testing.T) {
	s := terminationSummary(failedPod("j", 3, `{"outcome":"Failed","exitCode":3,"reason":"ImageTooLarge","message":"image is 2Gi, volume 1Gi"}`))
	assert.Equal(t, s.Reason, exitcode.ReasonImageTooLarge)
	assert.Equal(t, s.Message, "image is 2Gi, volume 1Gi")
	s = terminationSummary(failedPod("j", 137, "line one\nkilled"))
	assert.Equal(t, s.ExitCode, 137)
	assert.Equal(t, s.Message, "killed")
}

// The cloner's message reaches the DataVolume's conditions and events, which
// every reader of the DataVolume sees: a URL in it (a library's error, a log
// line when the cloner could not write its summary) keeps no credentials and
// no query string.
func TestTerminationSummaryRedactsURLs(t *testing.T) {
	s := terminationSummary(failedPod("j", 3, `{"outcome":"Failed","exitCode":3,"reason":"SourceUnavailable",`+
		`"message":"pulling registry.example/d:1: GET https://blobs.example/sha256:ab?X-Amz-Signature=s3cr3t: unexpected status code 403"}`))
	assert.Equal(t, s.Message, "pulling registry.example/d:1: GET https://blobs.example/sha256:ab unexpected status code 403")
	s = terminationSummary(failedPod("j", 1, `Get "http://user:s3cr3t@images.example/d.img?token=s3cr3t": EOF`))
	assert.Equal(t, s.Message, `Get "http://images.example/d.img": EOF`)
}

func TestCloneWithoutSourceKeepsItsPhase(t *testing.T) {
	dv := cloneDV("copy", "missing")
	o := observe(dv)
	o.wait = &waiting{reason: ReasonCloneWithoutSource, message: "The source pvc missing doesn't exist"}
	st, events := desiredStatus(o)
	assert.Equal(t, st.Phase, v1beta1.Pending)
	assert.Equal(t, st.Progress, v1beta1.ProgressNotAvailable)
	assert.DeepEqual(t, reasons(events), []string{"Warning CloneWithoutSource"})
}
