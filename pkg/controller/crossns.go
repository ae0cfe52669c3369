package controller

// A clone across namespaces moves its data without a network hop: one pod
// in the source namespace copies the source into a temporary claim made to
// the target's spec, and the filled volume is then handed over to the
// target claim. The hand-over, step by step, each step found again from
// what exists after a crash:
//
//  1. the volume gets reclaim policy Retain (the old policy is kept in an
//     annotation), so deleting the temporary claim cannot delete the data;
//  2. the target claim is created pre-bound to the volume (spec.volumeName);
//     while the volume's claimRef names the temporary claim it stays Pending;
//  3. the Job and the temporary claim are deleted; the volume is Released,
//     and a Released volume is never bound to another claim;
//  4. the volume's claimRef is pointed at the target claim (its UID), and
//     the PersistentVolume controller binds the two;
//  5. once bound, the reclaim policy is restored.
//
// Nothing can own across namespaces, so the temporary claim and the Job
// carry the DataVolume's UID as a label and its key as an annotation, and a
// finalizer on the DataVolume cleans the source namespace when it goes.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/go-logr/logr"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apiserver/pkg/authentication/user"

	"github.com/datavolume/datavolume/pkg/apis/cdi"
	"github.com/datavolume/datavolume/pkg/apis/cdi/v1beta1"
	"github.com/datavolume/datavolume/pkg/cloneauth"
	"github.com/datavolume/datavolume/pkg/kubevirt"
)

const (
	// FinalizerCrossNamespaceClone holds a cross-namespace clone's
	// DataVolume until what it made in the source namespace is gone.
	FinalizerCrossNamespaceClone = "datavolume.cdi.kubevirt.io/cross-namespace-clone"
	// AnnDataVolume names, namespace/name, the DataVolume a temporary claim
	// or Job in another namespace works for.
	AnnDataVolume = "datavolume.cdi.kubevirt.io/datavolume"
	// AnnSourceUID is the UID of the source claim a temporary claim was
	// made to copy: a source replaced by another of its name is not it.
	AnnSourceUID = "datavolume.cdi.kubevirt.io/source-uid"
	// AnnReclaimPolicy keeps a handed-over volume's own reclaim policy
	// while it is Retain for the hand-over.
	AnnReclaimPolicy = "datavolume.cdi.kubevirt.io/reclaim-policy"
)

// Reasons of a cross-namespace clone.
const (
	// ReasonCloneGrantInvalid: the grant is missing, forged or for another clone.
	ReasonCloneGrantInvalid = "CloneGrantInvalid"
	// ReasonClonePermissionMissing: the requester no longer may clone the
	// source; the clone waits and is checked again.
	ReasonClonePermissionMissing = "ClonePermissionMissing"
	// ReasonCloneSourceNotBound: the source claim has no volume yet, so no data.
	ReasonCloneSourceNotBound = "CloneSourceNotBound"
	// ReasonHandOver: the data is copied and the volume is being handed
	// over to the target claim.
	ReasonHandOver = "HandOverInProgress"
	// ReasonHandOverFailed: the volume was bound to a claim not ours.
	ReasonHandOverFailed = "HandOverFailed"
)

// The steps of a hand-over, for the test-only crash points.
const (
	StepRetained      = "retained"
	StepTargetCreated = "target-created"
	StepReleased      = "released"
	StepRebound       = "rebound"
	StepRestored      = "restored"
)

// AnnTestCrashAfter names the hand-over step after which a controller run
// with test crash points ends its process, for this DataVolume.
const AnnTestCrashAfter = "datavolume.cdi.kubevirt.io/test-crash-after"

func (c *Controller) crashAfter(dv *v1beta1.DataVolume, step string) {
	if c.opts.CrashAfter != nil && dv.Annotations[AnnTestCrashAfter] == step {
		c.opts.CrashAfter(dv, step)
	}
}

// tmpClaimName is the temporary claim of a cross-namespace clone in the
// source namespace; by UID, as DataVolumes of many namespaces may clone
// from one.
func tmpClaimName(dv *v1beta1.DataVolume) string { return "clone-tmp-" + string(dv.UID) }

// crossJobName is the Job of a cross-namespace clone in the source namespace.
func crossJobName(dv *v1beta1.DataVolume) string { return "cloner-" + string(dv.UID) }

// dataVolumeKeyOf is the key of the DataVolume obj works for by annotation.
func dataVolumeKeyOf(obj metav1.Object) string {
	if obj.GetLabels()[LabelManagedBy] != ManagedBy {
		return ""
	}
	return obj.GetAnnotations()[AnnDataVolume]
}

// syncCrossNamespace runs one step of a cross-namespace clone and reads its
// state into o. It returns when to look again without an event.
func (c *Controller) syncCrossNamespace(ctx context.Context, o *observation, internal *cdi.DataVolume, done bool) (time.Duration, error) {
	if done {
		// Only a failed Job stays, for kubectl logs, until the DataVolume goes.
		return 0, c.cleanUpSourceNamespace(ctx, o, o.dv.Status.Phase == v1beta1.Failed)
	}
	if o.foreignClaim {
		return 0, nil
	}
	if madeForNetwork(o.claim) {
		return c.syncNetworkClone(ctx, o, internal, nil)
	}
	if o.claim != nil {
		return c.handOver(ctx, o)
	}
	src := o.plan.CloneSource
	tmp, err := c.claims.PersistentVolumeClaims(src.Namespace).Get(tmpClaimName(o.dv))
	if apierrors.IsNotFound(err) {
		tmp = nil
	} else if err != nil {
		return 0, err
	}
	job, err := c.jobs.Jobs(src.Namespace).Get(crossJobName(o.dv))
	if apierrors.IsNotFound(err) || (err == nil && job.DeletionTimestamp != nil) {
		job = nil
	} else if err != nil {
		return 0, err
	}

	if job != nil {
		o.job = job
		requeue, err := c.observePods(ctx, o)
		if err != nil {
			return 0, err
		}
		switch {
		case jobFinished(job, batchv1.JobComplete) && tmp != nil:
			return c.startHandOver(ctx, o, internal, tmp)
		case jobFinished(job, batchv1.JobComplete):
			o.fatal = &waiting{reason: ReasonHandOverFailed,
				message: fmt.Sprintf("the temporary claim %s/%s was deleted before its volume was handed over", src.Namespace, tmpClaimName(o.dv))}
			return 0, nil
		case jobFinished(job, batchv1.JobFailed):
			// Failed: the status says so; scratch and the temporary claim go at once.
			return 0, c.deleteTmpClaim(ctx, o.dv, tmp)
		}
		return requeue, nil
	}

	// Nothing moves data yet: every check comes before the first Job.
	grant, ok := c.verifyGrant(o)
	if !ok {
		return 0, c.deleteTmpClaim(ctx, o.dv, tmp)
	}
	source, err := c.claims.PersistentVolumeClaims(src.Namespace).Get(src.Name)
	if apierrors.IsNotFound(err) {
		o.wait = &waiting{reason: ReasonCloneWithoutSource, message: fmt.Sprintf("The source pvc %s/%s doesn't exist", src.Namespace, src.Name)}
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if grant.SourceUID != "" && grant.SourceUID != source.UID {
		o.fatal = &waiting{reason: ReasonCloneGrantInvalid,
			message: fmt.Sprintf("the clone grant is for source PersistentVolumeClaim %s/%s with UID %s; the claim of that name now is another (UID %s)", src.Namespace, src.Name, grant.SourceUID, source.UID)}
		return 0, c.deleteTmpClaim(ctx, o.dv, tmp)
	}
	if source.Status.Phase != corev1.ClaimBound {
		o.wait = &waiting{phase: v1beta1.CloneScheduled, reason: ReasonCloneSourceNotBound,
			message: fmt.Sprintf("The source pvc %s/%s is not bound to a volume yet: it holds no data", src.Namespace, src.Name)}
		return 0, nil
	}
	c.waitForSource(o, source)
	if o.wait != nil {
		return 0, nil
	}
	if requeue, allowed := c.recheckPermission(ctx, o, grant); !allowed {
		return requeue, nil
	}

	if !slices.Contains(o.dv.Finalizers, FinalizerCrossNamespaceClone) {
		if err := c.setFinalizer(ctx, o, true); err != nil {
			return 0, err
		}
	}
	if tmp != nil && tmp.Annotations[AnnSourceUID] != string(source.UID) {
		// Made for a source since replaced: start again.
		return time.Second, c.deleteTmpClaim(ctx, o.dv, tmp)
	}
	if wantsNetwork(o.dv) && tmp == nil {
		return c.syncNetworkClone(ctx, o, internal, source)
	}
	if tmp == nil {
		if tmp, err = c.createTmpClaim(ctx, o, internal, source); err != nil {
			return 0, err
		}
		if tmp == nil && o.claimError != nil && o.claimError.reason == ReasonExceededQuota {
			// The hand-over needs a claim in the source namespace; without
			// room for it, the pair moves the data over the network.
			logr.FromContextOrDiscard(ctx).Info("Source namespace refused the temporary claim; cloning over the network", "reason", o.claimError.message)
			o.claimError = nil
			return c.syncNetworkClone(ctx, o, internal, source)
		}
		if tmp == nil {
			return 0, nil
		}
	}
	if err := c.checkLive(ctx, o); err != nil {
		return time.Second, err
	}
	rendered, err := renderJob(jobInput{dv: o.dv, spec: &internal.Spec, plan: o.plan, claim: tmp, source: source, opts: &c.opts.Jobs})
	if err != nil {
		return 0, err
	}
	rendered.Name = crossJobName(o.dv)
	rendered.Namespace = src.Namespace
	rendered.OwnerReferences = nil
	rendered.Annotations = map[string]string{AnnDataVolume: o.dv.Namespace + "/" + o.dv.Name}
	created, err := c.kube.BatchV1().Jobs(rendered.Namespace).Create(ctx, rendered, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return 0, fmt.Errorf("creating Job %s/%s: %w", rendered.Namespace, rendered.Name, err)
	}
	if err == nil {
		o.job = created
		logr.FromContextOrDiscard(ctx).Info("Created Job", "job", klogRef(created), "command", o.plan.Command,
			"source", src.String(), "requester", userName(grant))
	}
	return 0, nil
}

func klogRef(obj metav1.Object) string { return obj.GetNamespace() + "/" + obj.GetName() }

func userName(g cloneauth.Grant) string {
	if g.Requester == nil {
		return ""
	}
	return g.Requester.GetName()
}

// verifyGrant checks the grant datavolume-apiserver signed at create, as of
// the DataVolume's creation. An invalid one fails the DataVolume: nothing
// is ever made for it.
func (c *Controller) verifyGrant(o *observation) (cloneauth.Grant, bool) {
	if c.opts.Grants == nil {
		o.wait = &waiting{phase: v1beta1.CloneScheduled, reason: ReasonCloneGrantInvalid,
			message: "this controller has no keys to verify clone grants (--clone-grant-public-keys): cross-namespace clones wait"}
		return cloneauth.Grant{}, false
	}
	src := o.plan.CloneSource
	want := cloneauth.Target{Namespace: o.dv.Namespace, Name: o.dv.Name, UID: o.dv.UID, SourceNamespace: src.Namespace, SourceName: src.Name}
	grant, err := c.opts.Grants.Verify(o.dv.Annotations[cloneauth.GrantAnnotation], want, o.dv.CreationTimestamp.Time)
	if err != nil {
		o.fatal = &waiting{reason: ReasonCloneGrantInvalid, message: "the clone grant does not allow this clone: " + err.Error()}
		return cloneauth.Grant{}, false
	}
	return grant, true
}

// recheckPermission asks again, right before data moves, whether the
// grant's requester may clone the source: a RoleBinding removed while the
// clone waited stops it. Denied, the clone waits and is asked again with
// backoff, so restoring the permission resumes it.
func (c *Controller) recheckPermission(ctx context.Context, o *observation, grant cloneauth.Grant) (time.Duration, bool) {
	key := o.dv.Namespace + "/" + o.dv.Name
	if c.opts.CloneAuthorizer == nil {
		o.wait = &waiting{phase: v1beta1.CloneScheduled, reason: ReasonClonePermissionMissing,
			message: "this controller cannot check clone permissions: cross-namespace clones wait"}
		return 0, false
	}
	src := o.plan.CloneSource
	req := cloneauth.Request{User: grant.Requester, SourceNamespace: src.Namespace, SourceName: src.Name,
		TargetNamespace: o.dv.Namespace, TargetName: o.dv.Name}
	decision, err := c.opts.CloneAuthorizer.Authorize(ctx, req)
	log := logr.FromContextOrDiscard(ctx).WithValues("requester", userName(grant), "source", src.String(), "target", key)
	who := quoteUser(grant)
	if err == nil && decision.Allowed {
		// A VirtualMachine's template: its ServiceAccount must be allowed
		// too, as KubeVirt's admitter and the webhook require.
		var account user.Info
		account, err = c.vmServiceAccount(ctx, o.dv)
		if err == nil && account != nil && account.GetName() != userName(grant) {
			req.User = account
			who = fmt.Sprintf("%q (the VirtualMachine's ServiceAccount)", account.GetName())
			log = log.WithValues("serviceAccount", account.GetName())
			decision, err = c.opts.CloneAuthorizer.Authorize(ctx, req)
		}
	}
	if err == nil && decision.Allowed {
		c.recheck.Forget(key)
		log.Info("Clone permission confirmed before data moves", "via", decision.Via, "reason", decision.Reason)
		return 0, true
	}
	message := fmt.Sprintf("%s may no longer clone %s: missing permission %s; the clone waits and starts once it is granted again",
		who, src, decision.Missing)
	if err != nil {
		message = fmt.Sprintf("the permission of %s to clone %s could not be checked (%v); the clone waits", who, src, err)
	}
	log.Info("Clone permission denied before data moves", "missing", decision.Missing, "reason", decision.Reason, "err", errString(err))
	o.wait = &waiting{phase: v1beta1.CloneScheduled, reason: ReasonClonePermissionMissing, message: message}
	return c.recheck.When(key), false
}

// vmServiceAccount is the ServiceAccount of the VirtualMachine that
// controls dv, or nil when no VM does.
func (c *Controller) vmServiceAccount(ctx context.Context, dv *v1beta1.DataVolume) (user.Info, error) {
	ref := metav1.GetControllerOfNoCopy(dv)
	if ref == nil || ref.Kind != "VirtualMachine" || !strings.HasPrefix(ref.APIVersion, kubevirt.Group+"/") {
		return nil, nil
	}
	if c.opts.VirtualMachines == nil {
		return nil, fmt.Errorf("this controller cannot read VirtualMachine %s/%s", dv.Namespace, ref.Name)
	}
	name, err := c.opts.VirtualMachines.ServiceAccountOf(ctx, dv.Namespace, ref.Name, ref.UID)
	if err != nil {
		return nil, err
	}
	return cloneauth.ServiceAccountUser(dv.Namespace, name), nil
}

func quoteUser(g cloneauth.Grant) string {
	if name := userName(g); name != "" {
		return fmt.Sprintf("%q", name)
	}
	return "the requester"
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// setFinalizer adds or removes the cross-namespace finalizer; o.dv becomes
// the updated DataVolume.
func (c *Controller) setFinalizer(ctx context.Context, o *observation, add bool) error {
	dv := o.dv.DeepCopy()
	has := slices.Contains(dv.Finalizers, FinalizerCrossNamespaceClone)
	switch {
	case add && !has:
		dv.Finalizers = append(dv.Finalizers, FinalizerCrossNamespaceClone)
	case !add && has:
		dv.Finalizers = slices.DeleteFunc(dv.Finalizers, func(f string) bool { return f == FinalizerCrossNamespaceClone })
	default:
		return nil
	}
	updated, err := c.cdi.CdiV1beta1().DataVolumes(dv.Namespace).Update(ctx, dv, metav1.UpdateOptions{})
	if err != nil {
		return fmt.Errorf("updating the finalizers of DataVolume %s/%s: %w", dv.Namespace, dv.Name, err)
	}
	o.dv = updated
	return nil
}

// checkLive refuses to start a writer from a stale cache (see syncJob).
func (c *Controller) checkLive(ctx context.Context, o *observation) error {
	live, err := c.cdi.CdiV1beta1().DataVolumes(o.dv.Namespace).Get(ctx, o.dv.Name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("reading DataVolume %s/%s before starting its Job: %w", o.dv.Namespace, o.dv.Name, err)
	}
	if live.ResourceVersion != o.dv.ResourceVersion || live.UID != o.dv.UID {
		return errStaleCache
	}
	return nil
}

// createTmpClaim makes the temporary claim in the source namespace, to the
// target's spec. A claim the source namespace refuses (quota) is a
// condition on the DataVolume.
func (c *Controller) createTmpClaim(ctx context.Context, o *observation, internal *cdi.DataVolume, source *corev1.PersistentVolumeClaim) (*corev1.PersistentVolumeClaim, error) {
	size, err := claimSize(o.plan, source, c.opts.Jobs.FilesystemOverhead)
	if err != nil {
		o.claimError = &waiting{reason: ReasonClaimNotValid, message: err.Error()}
		return nil, nil
	}
	claim := renderClaim(o.dv, internal, o.plan, size)
	claim.Name = tmpClaimName(o.dv)
	claim.Namespace = source.Namespace
	claim.OwnerReferences = nil
	claim.Labels = map[string]string{LabelManagedBy: ManagedBy, LabelDataVolumeUID: string(o.dv.UID)}
	claim.Annotations[AnnDataVolume] = o.dv.Namespace + "/" + o.dv.Name
	claim.Annotations[AnnSourceUID] = string(source.UID)
	created, err := c.kube.CoreV1().PersistentVolumeClaims(claim.Namespace).Create(ctx, claim, metav1.CreateOptions{})
	switch {
	case err == nil:
		return created, nil
	case apierrors.IsAlreadyExists(err):
		return nil, err
	case apierrors.IsForbidden(err) && strings.Contains(err.Error(), "exceeded quota"):
		o.claimError = &waiting{reason: ReasonExceededQuota, message: fmt.Sprintf("the temporary claim of the clone in namespace %s: %v", claim.Namespace, err)}
		return nil, nil
	case apierrors.IsInvalid(err) || apierrors.IsForbidden(err):
		o.claimError = &waiting{reason: ReasonClaimNotValid, message: fmt.Sprintf("the temporary claim of the clone in namespace %s: %v", claim.Namespace, err)}
		return nil, nil
	default:
		return nil, fmt.Errorf("creating PersistentVolumeClaim %s/%s: %w", claim.Namespace, claim.Name, err)
	}
}

func (c *Controller) deleteTmpClaim(ctx context.Context, dv *v1beta1.DataVolume, tmp *corev1.PersistentVolumeClaim) error {
	if tmp == nil || tmp.DeletionTimestamp != nil {
		return nil
	}
	err := c.kube.CoreV1().PersistentVolumeClaims(tmp.Namespace).Delete(ctx, tmp.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &tmp.UID}})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("deleting the temporary claim %s/%s of DataVolume %s/%s: %w", tmp.Namespace, tmp.Name, dv.Namespace, dv.Name, err)
	}
	return nil
}

// startHandOver runs steps 1 and 2 once the copy is done: the volume kept,
// and the target claim made pre-bound to it.
func (c *Controller) startHandOver(ctx context.Context, o *observation, internal *cdi.DataVolume, tmp *corev1.PersistentVolumeClaim) (time.Duration, error) {
	o.handingOver = true
	if tmp.Spec.VolumeName == "" {
		return 0, fmt.Errorf("the temporary claim %s/%s has no volume after its copy succeeded", tmp.Namespace, tmp.Name)
	}
	pv, err := c.kube.CoreV1().PersistentVolumes().Get(ctx, tmp.Spec.VolumeName, metav1.GetOptions{})
	if err != nil {
		return 0, fmt.Errorf("reading the volume %s of the temporary claim %s/%s: %w", tmp.Spec.VolumeName, tmp.Namespace, tmp.Name, err)
	}
	if err := c.retainVolume(ctx, pv, o.dv); err != nil {
		return 0, err
	}
	claim := renderClaim(o.dv, internal, o.plan, tmp.Spec.Resources.Requests[corev1.ResourceStorage])
	claim.Spec.VolumeName = pv.Name
	claim.Spec.Selector = nil
	claim.Spec.StorageClassName = tmp.Spec.StorageClassName
	claim.Spec.VolumeMode = tmp.Spec.VolumeMode
	claim.Spec.AccessModes = tmp.Spec.AccessModes
	created, err := c.kube.CoreV1().PersistentVolumeClaims(claim.Namespace).Create(ctx, claim, metav1.CreateOptions{})
	if err != nil {
		// AlreadyExists: the cache was behind; the next sync continues.
		return 0, fmt.Errorf("creating PersistentVolumeClaim %s/%s for the hand-over of volume %s: %w", claim.Namespace, claim.Name, pv.Name, err)
	}
	o.claim = created
	logr.FromContextOrDiscard(ctx).Info("Handing over volume", "volume", pv.Name, "from", klogRef(tmp), "to", klogRef(created))
	c.crashAfter(o.dv, StepTargetCreated)
	return c.handOver(ctx, o)
}

// retainVolume is step 1.
func (c *Controller) retainVolume(ctx context.Context, pv *corev1.PersistentVolume, dv *v1beta1.DataVolume) error {
	if pv.Labels[LabelDataVolumeUID] == string(dv.UID) {
		return nil
	}
	pv = pv.DeepCopy()
	if pv.Labels == nil {
		pv.Labels = map[string]string{}
	}
	if pv.Annotations == nil {
		pv.Annotations = map[string]string{}
	}
	pv.Labels[LabelDataVolumeUID] = string(dv.UID)
	pv.Annotations[AnnReclaimPolicy] = string(pv.Spec.PersistentVolumeReclaimPolicy)
	pv.Spec.PersistentVolumeReclaimPolicy = corev1.PersistentVolumeReclaimRetain
	if _, err := c.kube.CoreV1().PersistentVolumes().Update(ctx, pv, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("retaining volume %s for its hand-over: %w", pv.Name, err)
	}
	c.crashAfter(dv, StepRetained)
	return nil
}

// restoreVolume is step 5, and the clean-up of a hand-over left unfinished:
// the volume gets its own reclaim policy back.
func (c *Controller) restoreVolume(ctx context.Context, pv *corev1.PersistentVolume) error {
	policy, ok := pv.Annotations[AnnReclaimPolicy]
	if !ok {
		return nil
	}
	pv = pv.DeepCopy()
	if policy != "" {
		pv.Spec.PersistentVolumeReclaimPolicy = corev1.PersistentVolumeReclaimPolicy(policy)
	}
	delete(pv.Annotations, AnnReclaimPolicy)
	delete(pv.Labels, LabelDataVolumeUID)
	if _, err := c.kube.CoreV1().PersistentVolumes().Update(ctx, pv, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("restoring the reclaim policy of volume %s: %w", pv.Name, err)
	}
	return nil
}

// handOver runs steps 3 to 5 for the target claim o.claim.
func (c *Controller) handOver(ctx context.Context, o *observation) (time.Duration, error) {
	target := o.claim
	src := o.plan.CloneSource
	if target.Spec.VolumeName == "" {
		return 0, fmt.Errorf("the target claim %s/%s of a cross-namespace clone names no volume", target.Namespace, target.Name)
	}
	pv, err := c.kube.CoreV1().PersistentVolumes().Get(ctx, target.Spec.VolumeName, metav1.GetOptions{})
	if err != nil {
		return 0, fmt.Errorf("reading volume %s of PersistentVolumeClaim %s/%s: %w", target.Spec.VolumeName, target.Namespace, target.Name, err)
	}
	if target.Status.Phase == corev1.ClaimBound {
		if _, ok := pv.Annotations[AnnReclaimPolicy]; ok {
			if err := c.restoreVolume(ctx, pv); err != nil {
				return 0, err
			}
			c.crashAfter(o.dv, StepRestored)
		}
		o.handedOver = true
		return 0, c.cleanUpSourceNamespace(ctx, o, false)
	}
	o.handingOver = true

	// Step 3: nothing may use the temporary claim when it goes.
	if job, err := c.jobs.Jobs(src.Namespace).Get(crossJobName(o.dv)); err == nil {
		if job.DeletionTimestamp == nil {
			if err := c.deleteJob(ctx, job); err != nil {
				return 0, err
			}
		}
	} else if !apierrors.IsNotFound(err) {
		return 0, err
	}
	tmp, err := c.kube.CoreV1().PersistentVolumeClaims(src.Namespace).Get(ctx, tmpClaimName(o.dv), metav1.GetOptions{})
	switch {
	case err == nil:
		// Gone once its pod is: kubernetes.io/pvc-protection holds it till then.
		if err := c.deleteTmpClaim(ctx, o.dv, tmp); err != nil {
			return 0, err
		}
		if tmp.DeletionTimestamp == nil {
			c.crashAfter(o.dv, StepReleased)
		}
		return 2 * time.Second, nil
	case !apierrors.IsNotFound(err):
		return 0, fmt.Errorf("reading the temporary claim %s/%s: %w", src.Namespace, tmpClaimName(o.dv), err)
	}

	// Step 4.
	ref := pv.Spec.ClaimRef
	switch {
	case ref != nil && ref.UID == target.UID:
		// Bound by the PersistentVolume controller soon; the claim's update wakes us.
		return 2 * time.Second, nil
	case ref == nil || (ref.Namespace == src.Namespace && ref.Name == tmpClaimName(o.dv)):
		pv = pv.DeepCopy()
		pv.Spec.ClaimRef = &corev1.ObjectReference{Kind: "PersistentVolumeClaim", APIVersion: "v1",
			Namespace: target.Namespace, Name: target.Name, UID: target.UID}
		if _, err := c.kube.CoreV1().PersistentVolumes().Update(ctx, pv, metav1.UpdateOptions{}); err != nil {
			return 0, fmt.Errorf("handing volume %s over to PersistentVolumeClaim %s/%s: %w", pv.Name, target.Namespace, target.Name, err)
		}
		c.crashAfter(o.dv, StepRebound)
		// The claim is synced now rather than at the binder's next resync.
		if err := c.touchClaim(ctx, o); err != nil {
			return 0, err
		}
		return 2 * time.Second, nil
	default:
		o.fatal = &waiting{reason: ReasonHandOverFailed,
			message: fmt.Sprintf("volume %s was bound to PersistentVolumeClaim %s/%s during its hand-over", pv.Name, ref.Namespace, ref.Name)}
		return 0, nil
	}
}

// touchClaim writes CDI's pod annotations on the target claim; the write
// also makes the PersistentVolume controller sync it at once.
func (c *Controller) touchClaim(ctx context.Context, o *observation) error {
	claim := o.claim.DeepCopy()
	if claim.Annotations == nil {
		claim.Annotations = map[string]string{}
	}
	claim.Annotations[AnnPodPhase] = string(corev1.PodSucceeded)
	updated, err := c.kube.CoreV1().PersistentVolumeClaims(claim.Namespace).Update(ctx, claim, metav1.UpdateOptions{})
	if err != nil {
		return fmt.Errorf("annotating PersistentVolumeClaim %s/%s: %w", claim.Namespace, claim.Name, err)
	}
	o.claim = updated
	return nil
}

// cleanUpSourceNamespace removes what the clone made in the source
// namespace (keeping a failed Job when keepFailedJob), gives any volume
// left mid-hand-over its reclaim policy back, and then the finalizer.
func (c *Controller) cleanUpSourceNamespace(ctx context.Context, o *observation, keepFailedJob bool) error {
	dv := o.dv
	if !slices.Contains(dv.Finalizers, FinalizerCrossNamespaceClone) {
		return nil
	}
	src := o.plan.CloneSource
	selector := labels.SelectorFromSet(labels.Set{LabelDataVolumeUID: string(dv.UID)})
	jobs, err := c.jobs.Jobs(src.Namespace).List(selector)
	if err != nil {
		return err
	}
	keep := false
	for _, job := range jobs {
		if keepFailedJob && jobFinished(job, batchv1.JobFailed) {
			keep = true
			continue
		}
		if job.DeletionTimestamp == nil {
			if err := c.deleteJob(ctx, job); err != nil {
				return err
			}
		}
	}
	tmps, err := c.claims.PersistentVolumeClaims(src.Namespace).List(selector)
	if err != nil {
		return err
	}
	for _, tmp := range tmps {
		if err := c.deleteTmpClaim(ctx, dv, tmp); err != nil {
			return err
		}
	}
	if err := c.deleteNetwork(ctx, dv, src.Namespace); err != nil {
		return err
	}
	if !o.handedOver {
		// A volume left Retain mid-hand-over gets its policy back, and is
		// reclaimed with the claim that had it.
		pvs, err := c.kube.CoreV1().PersistentVolumes().List(ctx, metav1.ListOptions{LabelSelector: selector.String()})
		if err != nil {
			return fmt.Errorf("listing the volumes of DataVolume %s/%s: %w", dv.Namespace, dv.Name, err)
		}
		for i := range pvs.Items {
			if err := c.restoreVolume(ctx, &pvs.Items[i]); err != nil {
				return err
			}
		}
	}
	if keep {
		return nil
	}
	return c.setFinalizer(ctx, o, false)
}

// finalize cleans up after a cross-namespace clone whose DataVolume is
// being deleted.
func (c *Controller) finalize(ctx context.Context, o *observation) error {
	err := c.cleanUpSourceNamespace(ctx, o, false)
	if errors.Is(err, errStaleCache) {
		return nil
	}
	return err
}
