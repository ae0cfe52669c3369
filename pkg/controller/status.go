package controller

import (
	"fmt"
	"strings"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/datavolume/datavolume/pkg/apis/cdi/v1beta1"
	"github.com/datavolume/datavolume/pkg/cloner/exitcode"
	"github.com/datavolume/datavolume/pkg/plan"
	"github.com/datavolume/datavolume/pkg/redact"
)

// Condition reasons and messages, CDI's words where CDI has them: tools and
// KubeVirt read them.
const (
	reasonBound           = "Bound"
	reasonPending         = "Pending"
	reasonClaimLost       = "ClaimLost"
	reasonNotFound        = "NotFound"
	reasonPodRunning      = "Pod is running"
	reasonTransferRunning = "TransferRunning"
	reasonCompleted       = "Completed"
	reasonError           = "Error"
	reasonImagePullFailed = "ImagePullFailed"
	// ReasonResourceExists: a claim of the DataVolume's name is not ours.
	ReasonResourceExists = "ErrResourceExists"
	// ReasonClaimNotValid: the claim cannot be made as the spec asks.
	ReasonClaimNotValid = "ErrClaimNotValid"
	// ReasonExceededQuota: a ResourceQuota refused the claim.
	ReasonExceededQuota = "ErrExceededQuota"
	// ReasonCloneSourceInUse: a pod writes to the clone's source.
	ReasonCloneSourceInUse = "CloneSourceInUse"
	// ReasonCloneWithoutSource: the clone's source claim does not exist.
	ReasonCloneWithoutSource = "CloneWithoutSource"
	// ReasonSourceNotReady: the source is a DataVolume still being filled.
	ReasonSourceNotReady = "ImportPVCNotReady"
	// ReasonScratchRequired: the import is rerun with scratch space.
	ReasonScratchRequired = "Scratch space required"
	// ReasonWaitForFirstConsumer: the claim waits for a pod that uses it.
	ReasonWaitForFirstConsumer = "WaitForFirstConsumer"
)

// words are a command's phases and Event texts.
type words struct {
	scheduled, inProgress                     v1beta1.DataVolumePhase
	scheduledReason, inProgressReason         string
	succeededReason, failedReason             string
	scheduledMsg, inProgressMsg, succeededMsg string
	failedMsg                                 string
	claimOnlyMessages                         bool
}

var importWords = words{
	scheduled: v1beta1.ImportScheduled, inProgress: v1beta1.ImportInProgress,
	scheduledReason: "ImportScheduled", inProgressReason: "ImportInProgress",
	succeededReason: "ImportSucceeded", failedReason: "ImportFailed",
	scheduledMsg: "Import into %s scheduled", inProgressMsg: "Import into %s in progress",
	succeededMsg: "Successfully imported into PVC %s", failedMsg: "Failed to import into PVC %s",
	claimOnlyMessages: true,
}

var cloneWords = words{
	scheduled: v1beta1.CloneScheduled, inProgress: v1beta1.CloneInProgress,
	scheduledReason: "CloneScheduled", inProgressReason: "CloneInProgress",
	succeededReason: "CloneSucceeded", failedReason: "CloneFailed",
	scheduledMsg: "Cloning from %s/%s into %s/%s scheduled", inProgressMsg: "Cloning from %s/%s into %s/%s in progress",
	succeededMsg: "Successfully cloned from %s/%s into %s/%s", failedMsg: "Cloning from %s/%s into %s/%s failed",
}

var uploadWords = words{
	scheduled: v1beta1.UploadScheduled, inProgress: v1beta1.UploadReady,
	scheduledReason: "UploadScheduled", inProgressReason: "UploadReady",
	succeededReason: "UploadSucceeded", failedReason: "UploadFailed",
	scheduledMsg: "Upload into %s scheduled", inProgressMsg: "Upload into %s ready",
	succeededMsg: "Successfully uploaded into %s", failedMsg: "Upload into %s failed",
	claimOnlyMessages: true,
}

func wordsFor(p *plan.Plan) words {
	switch p.Command {
	case plan.CommandClone:
		return cloneWords
	case plan.CommandUpload:
		return uploadWords
	default:
		return importWords
	}
}

// message fills one of the words' messages for the DataVolume.
func (w words) message(format string, o *observation) string {
	if w.claimOnlyMessages {
		return fmt.Sprintf(format, o.dv.Name)
	}
	src := o.plan.CloneSource
	if src == nil {
		src = &plan.ClaimRef{}
	}
	return fmt.Sprintf(format, src.Namespace, src.Name, o.dv.Namespace, o.dv.Name)
}

// waiting says why no Job runs yet.
type waiting struct {
	phase   v1beta1.DataVolumePhase
	reason  string
	message string
}

// observation is what the controller saw of one DataVolume's world.
type observation struct {
	dv   *v1beta1.DataVolume
	plan *plan.Plan
	// claim is the DataVolume's claim; nil before it exists or when the
	// claim of that name is not ours (foreignClaim).
	claim        *corev1.PersistentVolumeClaim
	foreignClaim bool
	// claimError says why the claim cannot be made (quota, invalid).
	claimError *waiting
	// wait says why no Job runs yet.
	wait *waiting
	// fatal says why the DataVolume fails without a Job failing (an
	// invalid clone grant, a volume taken during its hand-over).
	fatal *waiting
	// handingOver: a cross-namespace clone's data is copied and its volume
	// is moving to the target claim; handedOver: it is there.
	handingOver, handedOver bool
	job                     *batchv1.Job
	// pod is the Job's newest pod.
	pod *corev1.Pod
	// failure is the cloner's summary of the Job's last failed pod.
	failure *exitcode.Termination
	// result is the cloner's summary of the pod that succeeded.
	result *exitcode.Termination
	// progress is the percentage the running cloner reports, "" unknown.
	progress v1beta1.DataVolumeProgress
	now      metav1.Time
}

// event is an Event to record on the DataVolume.
type event struct {
	eventType, reason, message string
}

// desiredStatus computes the DataVolume's status from what was observed,
// and the Events its changes call for. A Succeeded or Failed DataVolume
// keeps its phase.
func desiredStatus(o *observation) (v1beta1.DataVolumeStatus, []event) {
	old := o.dv.Status
	st := *old.DeepCopy()
	w := wordsFor(o.plan)
	if st.Progress == "" {
		st.Progress = v1beta1.ProgressNotAvailable
	}
	if o.claim != nil {
		st.ClaimName = o.claim.Name
	}
	if n := retries(o.job); n > st.RestartCount {
		st.RestartCount = n
	}

	terminal := old.Phase == v1beta1.Succeeded || old.Phase == v1beta1.Failed
	running := corev1.ConditionFalse
	runningReason, runningMessage := "", ""
	if !terminal {
		switch {
		case o.fatal != nil:
			st.Phase = v1beta1.Failed
			runningReason, runningMessage = o.fatal.reason, o.fatal.message
		case o.foreignClaim:
			st.Phase = v1beta1.Pending
		case o.claimError != nil:
			st.Phase = v1beta1.Pending
			runningReason, runningMessage = o.claimError.reason, o.claimError.message
		case o.wait != nil:
			st.Phase = o.wait.phase
			if st.Phase == "" {
				// Waiting where CDI keeps the phase it had.
				st.Phase = orPending(old.Phase)
			}
			runningReason, runningMessage = o.wait.reason, o.wait.message
		case o.handedOver:
			st.Phase = v1beta1.Succeeded
			st.Progress = "100.0%"
			runningReason = reasonCompleted
		case o.handingOver:
			st.Phase = w.inProgress
			st.Progress = "100.0%"
			running, runningReason = corev1.ConditionTrue, ReasonHandOver
		case o.claim == nil && o.job == nil:
			st.Phase = v1beta1.Pending
		case o.job == nil:
			st.Phase = w.scheduled
		case jobFinished(o.job, batchv1.JobComplete):
			st.Phase = v1beta1.Succeeded
			st.Progress = "100.0%"
			runningReason = reasonCompleted
		case jobFinished(o.job, batchv1.JobFailed):
			st.Phase = v1beta1.Failed
			runningReason, runningMessage = reasonError, failureMessage(o)
		default:
			st.Phase, running, runningReason, runningMessage = podPhase(o, w, old.Phase)
			if st.Phase == w.inProgress && o.progress != "" {
				st.Progress = o.progress
			}
		}
	} else {
		running = conditionStatus(old.Conditions, v1beta1.DataVolumeRunning)
		c := findCondition(old.Conditions, v1beta1.DataVolumeRunning)
		if c != nil {
			runningReason, runningMessage = c.Reason, c.Message
		}
	}
	if st.Phase == w.scheduled || st.Phase == v1beta1.Pending || st.Phase == v1beta1.WaitForFirstConsumer {
		st.Progress = v1beta1.ProgressNotAvailable
	}

	boundStatus, boundReason, boundMessage := boundCondition(o)
	st.Conditions = setCondition(st.Conditions, v1beta1.DataVolumeBound, boundStatus, boundReason, boundMessage, o.now)
	st.Conditions = setCondition(st.Conditions, v1beta1.DataVolumeRunning, running, runningReason, runningMessage, o.now)
	ready, readyReason := corev1.ConditionFalse, ""
	switch {
	case st.Phase == v1beta1.Succeeded:
		ready = corev1.ConditionTrue
	case running == corev1.ConditionTrue:
		readyReason = reasonTransferRunning
	}
	st.Conditions = setCondition(st.Conditions, v1beta1.DataVolumeReady, ready, readyReason, "", o.now)

	return st, eventsFor(o, w, old, st)
}

// podPhase is the phase while the Job runs, from its newest pod.
func podPhase(o *observation, w words, current v1beta1.DataVolumePhase) (v1beta1.DataVolumePhase, corev1.ConditionStatus, string, string) {
	pod := o.pod
	if pod == nil {
		return w.scheduled, corev1.ConditionFalse, "", ""
	}
	status := containerStatus(pod)
	switch {
	case pod.Status.Phase == corev1.PodFailed:
		// Retried: the phase stays while the replacement comes.
		phase := current
		if phase == "" || phase == v1beta1.Pending {
			phase = w.scheduled
		}
		return phase, corev1.ConditionFalse, reasonError, failureMessage(o)
	case pod.Status.Phase == corev1.PodSucceeded || (status != nil && status.State.Terminated != nil && status.State.Terminated.ExitCode == 0):
		// Done, and the Job controller has not said Complete yet: still in
		// progress (not back to scheduled), so nothing is written meanwhile.
		return w.inProgress, corev1.ConditionTrue, reasonPodRunning, ""
	case status != nil && status.State.Running != nil:
		if o.plan.Command == plan.CommandUpload && !status.Ready {
			return w.scheduled, corev1.ConditionFalse, "", ""
		}
		return w.inProgress, corev1.ConditionTrue, reasonPodRunning, ""
	case status != nil && status.State.Waiting != nil:
		switch reason := status.State.Waiting.Reason; reason {
		case "ImagePullBackOff", "ErrImagePull", "InvalidImageName":
			return w.scheduled, corev1.ConditionFalse, reasonImagePullFailed, "failed to pull image: " + status.Image
		case "ContainerCreating", "PodInitializing":
			// Every pod passes these: not worth a status write each.
			return w.scheduled, corev1.ConditionFalse, "", ""
		default:
			return w.scheduled, corev1.ConditionFalse, reason, status.State.Waiting.Message
		}
	default:
		for _, c := range pod.Status.Conditions {
			if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
				return w.scheduled, corev1.ConditionFalse, "Unschedulable", c.Message
			}
		}
		return w.scheduled, corev1.ConditionFalse, "", ""
	}
}

// failureMessage says what went wrong, from the cloner's summary.
func failureMessage(o *observation) string {
	if o.fatal != nil {
		return o.fatal.message
	}
	if o.failure != nil && o.failure.Message != "" {
		return o.failure.Message
	}
	if o.job != nil {
		for _, c := range o.job.Status.Conditions {
			if c.Type == batchv1.JobFailed && c.Status == corev1.ConditionTrue {
				return c.Message
			}
		}
	}
	return ""
}

func boundCondition(o *observation) (corev1.ConditionStatus, string, string) {
	switch {
	case o.foreignClaim:
		return corev1.ConditionFalse, ReasonResourceExists,
			fmt.Sprintf("Resource %q already exists and is not managed by DataVolume", o.dv.Name)
	case o.claimError != nil:
		return corev1.ConditionFalse, o.claimError.reason, o.claimError.message
	case o.claim == nil:
		return corev1.ConditionFalse, reasonNotFound, "No PVC found"
	}
	switch o.claim.Status.Phase {
	case corev1.ClaimBound:
		return corev1.ConditionTrue, reasonBound, fmt.Sprintf("PVC %s Bound", o.claim.Name)
	case corev1.ClaimLost:
		return corev1.ConditionFalse, reasonClaimLost, "Claim Lost"
	default:
		return corev1.ConditionFalse, reasonPending, fmt.Sprintf("PVC %s Pending", o.claim.Name)
	}
}

// quietReasons are waits the controller resolves itself: no Warning.
var quietReasons = map[string]bool{
	ReasonScratchRequired: true, ReasonCloneSourceInUse: true, ReasonSourceNotReady: true,
	ReasonWaitForFirstConsumer: true, "ContainerCreating": true, "PodInitializing": true,
}

func eventsFor(o *observation, w words, old, st v1beta1.DataVolumeStatus) []event {
	var events []event
	if old.Phase != st.Phase {
		switch st.Phase {
		case w.scheduled:
			events = append(events, event{corev1.EventTypeNormal, w.scheduledReason, w.message(w.scheduledMsg, o)})
		case w.inProgress:
			events = append(events, event{corev1.EventTypeNormal, w.inProgressReason, w.message(w.inProgressMsg, o)})
		case v1beta1.Succeeded:
			events = append(events, event{corev1.EventTypeNormal, w.succeededReason, w.message(w.succeededMsg, o)})
		case v1beta1.Failed:
			msg := w.message(w.failedMsg, o)
			if detail := failureMessage(o); detail != "" {
				msg += ": " + detail
			}
			events = append(events, event{corev1.EventTypeWarning, w.failedReason, msg})
		}
	}
	// A claim waiting for its volume is every claim's first state: no Event.
	if cur, was := findCondition(st.Conditions, v1beta1.DataVolumeBound), findCondition(old.Conditions, v1beta1.DataVolumeBound); cur != nil && cur.Reason != "" &&
		cur.Reason != reasonPending && cur.Reason != reasonNotFound &&
		(was == nil || was.Status != cur.Status || was.Reason != cur.Reason || was.Message != cur.Message) {
		eventType := corev1.EventTypeNormal
		if cur.Reason == ReasonResourceExists || cur.Reason == ReasonClaimNotValid || cur.Reason == ReasonExceededQuota || cur.Reason == reasonClaimLost {
			eventType = corev1.EventTypeWarning
		}
		events = append(events, event{eventType, cur.Reason, cur.Message})
	}
	cur, was := findCondition(st.Conditions, v1beta1.DataVolumeRunning), findCondition(old.Conditions, v1beta1.DataVolumeRunning)
	if cur != nil && cur.Status == corev1.ConditionFalse && cur.Message != "" && cur.Reason != "" &&
		(was == nil || was.Message != cur.Message || was.Reason != cur.Reason) && st.Phase != v1beta1.Failed &&
		cur.Reason != ReasonResourceExists && cur.Reason != ReasonClaimNotValid && cur.Reason != ReasonExceededQuota {
		eventType := corev1.EventTypeWarning
		if quietReasons[cur.Reason] {
			eventType = corev1.EventTypeNormal
		}
		events = append(events, event{eventType, cur.Reason, cur.Message})
	}
	return events
}

// retries counts the Job's failed pods that another pod replaced: the
// last failure of a failed Job was not retried.
func retries(job *batchv1.Job) int32 {
	if job == nil {
		return 0
	}
	n := job.Status.Failed
	if n > 0 && jobFinished(job, batchv1.JobFailed) {
		n--
	}
	return n
}

func jobFinished(job *batchv1.Job, condition batchv1.JobConditionType) bool {
	for _, c := range job.Status.Conditions {
		if c.Type == condition && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

// containerStatus is the cloner container's status in pod.
func containerStatus(pod *corev1.Pod) *corev1.ContainerStatus {
	for i := range pod.Status.ContainerStatuses {
		if pod.Status.ContainerStatuses[i].Name == clonerContainer {
			return &pod.Status.ContainerStatuses[i]
		}
	}
	return nil
}

// terminationSummary is the cloner's one-line JSON summary in the pod's
// termination message; a message that is not one (the log tail Kubernetes
// falls back to) becomes the summary's message.
func terminationSummary(pod *corev1.Pod) *exitcode.Termination {
	status := containerStatus(pod)
	if status == nil {
		return nil
	}
	terminated := status.State.Terminated
	if terminated == nil {
		terminated = status.LastTerminationState.Terminated
	}
	if terminated == nil {
		return nil
	}
	msg := strings.TrimSpace(terminated.Message)
	// The message goes to the DataVolume's conditions and events: a URL in
	// it (a library's error, or a log line when the cloner wrote no summary)
	// loses its credentials and query string first.
	if s, err := exitcode.Parse(msg); err == nil {
		s.Message = redact.URLsIn(s.Message)
		return &s
	}
	return &exitcode.Termination{Outcome: exitcode.Failed, ExitCode: int(terminated.ExitCode), Reason: exitcode.Reason(terminated.Reason),
		Message: redact.URLsIn(lastLine(msg))}
}

func lastLine(s string) string {
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

func findCondition(conditions []v1beta1.DataVolumeCondition, t v1beta1.DataVolumeConditionType) *v1beta1.DataVolumeCondition {
	for i := range conditions {
		if conditions[i].Type == t {
			return &conditions[i]
		}
	}
	return nil
}

func conditionStatus(conditions []v1beta1.DataVolumeCondition, t v1beta1.DataVolumeConditionType) corev1.ConditionStatus {
	if c := findCondition(conditions, t); c != nil {
		return c.Status
	}
	return corev1.ConditionUnknown
}

// setCondition sets a condition as CDI does: a new status moves the
// transition time; a new reason or message only the heartbeat.
func setCondition(conditions []v1beta1.DataVolumeCondition, t v1beta1.DataVolumeConditionType, status corev1.ConditionStatus, reason, message string, now metav1.Time) []v1beta1.DataVolumeCondition {
	c := findCondition(conditions, t)
	if c == nil {
		conditions = append(conditions, v1beta1.DataVolumeCondition{Type: t})
		c = &conditions[len(conditions)-1]
	}
	switch {
	case c.Status != status:
		c.Status, c.Reason, c.Message = status, reason, message
		c.LastTransitionTime, c.LastHeartbeatTime = now, now
	case c.Reason != reason || c.Message != message:
		c.Reason, c.Message = reason, message
		c.LastHeartbeatTime = now
	}
	return conditions
}
