package controller

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apiserver/pkg/authentication/user"

	"github.com/datavolume/datavolume/pkg/apis/cdi/v1beta1"
	"github.com/datavolume/datavolume/pkg/cloneauth"
)

// grantsStub verifies a grant whose token is "good" and names alice.
type grantsStub struct{ seen []time.Time }

func (g *grantsStub) Verify(token string, want cloneauth.Target, at time.Time) (cloneauth.Grant, error) {
	g.seen = append(g.seen, at)
	if token != "good" {
		return cloneauth.Grant{}, fmt.Errorf("%w: key id \"k1\"", cloneauth.ErrGrantBadSignature)
	}
	return cloneauth.Grant{SourceNamespace: want.SourceNamespace, SourceName: want.SourceName,
		TargetNamespace: want.Namespace, TargetName: want.Name, TargetUID: want.UID,
		Requester: &user.DefaultInfo{Name: "alice", Groups: []string{"devs"}}}, nil
}

// authorizerStub allows while allowed is true, and records who it was asked for.
type authorizerStub struct {
	allowed bool
	asked   []string
}

func (a *authorizerStub) Authorize(_ context.Context, req cloneauth.Request) (cloneauth.Decision, error) {
	a.asked = append(a.asked, req.User.GetName()+" "+req.SourceNamespace+"/"+req.SourceName)
	if a.allowed {
		return cloneauth.Decision{Allowed: true, Checked: true, Via: cloneauth.ViaDataVolumesSource}, nil
	}
	return cloneauth.Decision{Checked: true, Missing: "create datavolumes.cdi.kubevirt.io/source in namespace \"src\""}, nil
}

func crossDV(name, token string) *v1beta1.DataVolume {
	dv := cloneDV(name, "golden")
	dv.Spec.Source.PVC.Namespace = "src"
	dv.CreationTimestamp = metav1.Unix(500, 0)
	dv.Annotations = map[string]string{cloneauth.GrantAnnotation: token}
	return dv
}

func sourceClaim() *corev1.PersistentVolumeClaim {
	mode := corev1.PersistentVolumeFilesystem
	claim := boundClaim(&v1beta1.DataVolume{ObjectMeta: metav1.ObjectMeta{Name: "golden", Namespace: "src"}}, "1Gi", mode)
	claim.OwnerReferences = nil
	claim.UID = "uid-golden"
	return claim
}

func newCrossHarness(t *testing.T, dv *v1beta1.DataVolume, auth *authorizerStub) (*harness, *grantsStub) {
	h := newHarness(t, dv)
	grants := &grantsStub{}
	h.c.opts.Grants = grants
	h.c.opts.CloneAuthorizer = auth
	return h, grants
}

func TestCrossNamespaceCloneWithAnInvalidGrantFailsAndMakesNothing(t *testing.T) {
	dv := crossDV("copy", "forged")
	h, grants := newCrossHarness(t, dv, &authorizerStub{allowed: true})
	h.add(sourceClaim())

	h.sync(dv)
	got := h.dv("copy")
	assert.Equal(t, got.Status.Phase, v1beta1.Failed)
	running := condition(got.Status, v1beta1.DataVolumeRunning)
	assert.Equal(t, running.Reason, ReasonCloneGrantInvalid)
	assert.Assert(t, strings.Contains(running.Message, "signature invalid"), running.Message)
	assert.Equal(t, len(h.actions("create", "persistentvolumeclaims")), 1, "only the source claim the test made")
	assert.Equal(t, len(h.actions("create", "jobs")), 0)
	assert.DeepEqual(t, grants.seen, []time.Time{dv.CreationTimestamp.Time})
	events := strings.Join(h.events(), "\n")
	assert.Assert(t, strings.Contains(events, "Warning CloneFailed"), events)
}

func TestCrossNamespaceCloneWaitsWhileThePermissionIsMissing(t *testing.T) {
	dv := crossDV("copy", "good")
	auth := &authorizerStub{}
	h, _ := newCrossHarness(t, dv, auth)
	h.add(sourceClaim())

	h.sync(dv)
	got := h.dv("copy")
	assert.Equal(t, got.Status.Phase, v1beta1.CloneScheduled)
	running := condition(got.Status, v1beta1.DataVolumeRunning)
	assert.Equal(t, running.Reason, ReasonClonePermissionMissing)
	assert.Assert(t, strings.Contains(running.Message, `"alice" may no longer clone src/golden: missing permission create datavolumes.cdi.kubevirt.io/source`), running.Message)
	assert.Equal(t, len(h.actions("create", "jobs")), 0)
	assert.Equal(t, len(h.actions("create", "persistentvolumeclaims")), 1)
	assert.DeepEqual(t, auth.asked, []string{"alice src/golden"})
	events := strings.Join(h.events(), "\n")
	assert.Assert(t, strings.Contains(events, "Warning ClonePermissionMissing"), events)

	// The RoleBinding is back: the copy starts in the source namespace.
	auth.allowed = true
	h.sync(got)
	got = h.dv("copy")
	assert.Assert(t, slices.Contains(got.Finalizers, FinalizerCrossNamespaceClone))
	tmp, err := h.kube.CoreV1().PersistentVolumeClaims("src").Get(context.Background(), tmpClaimName(dv), metav1.GetOptions{})
	assert.NilError(t, err)
	assert.Equal(t, tmp.Annotations[AnnSourceUID], "uid-golden")
	assert.Equal(t, tmp.Annotations[AnnDataVolume], "ns/copy")
	assert.Equal(t, len(tmp.OwnerReferences), 0)
	job, err := h.kube.BatchV1().Jobs("src").Get(context.Background(), crossJobName(dv), metav1.GetOptions{})
	assert.NilError(t, err)
	assert.Equal(t, job.Annotations[AnnDataVolume], "ns/copy")
	var claimsMounted []string
	for _, v := range job.Spec.Template.Spec.Volumes {
		if v.PersistentVolumeClaim != nil {
			claimsMounted = append(claimsMounted, fmt.Sprintf("%s ro=%t", v.PersistentVolumeClaim.ClaimName, v.PersistentVolumeClaim.ReadOnly))
		}
	}
	assert.DeepEqual(t, claimsMounted, []string{tmpClaimName(dv) + " ro=false", "golden ro=true"})
	assert.Equal(t, got.Status.Phase, v1beta1.CloneScheduled)
	_, err = h.kube.CoreV1().PersistentVolumeClaims("ns").Get(context.Background(), "copy", metav1.GetOptions{})
	assert.ErrorContains(t, err, "not found", "no target claim before the data is there")
}

func TestCrossNamespaceCloneWaitsForAnUnboundSource(t *testing.T) {
	dv := crossDV("copy", "good")
	h, _ := newCrossHarness(t, dv, &authorizerStub{allowed: true})
	source := sourceClaim()
	source.Status.Phase = corev1.ClaimPending
	h.add(source)
	h.sync(dv)
	got := h.dv("copy")
	assert.Equal(t, got.Status.Phase, v1beta1.CloneScheduled)
	assert.Equal(t, condition(got.Status, v1beta1.DataVolumeRunning).Reason, ReasonCloneSourceNotBound)
	assert.Equal(t, len(h.actions("create", "jobs")), 0)
}

func TestCrossNamespaceCloneHandsTheVolumeOver(t *testing.T) {
	ctx := context.Background()
	dv := crossDV("copy", "good")
	dv.Finalizers = []string{FinalizerCrossNamespaceClone}
	h, _ := newCrossHarness(t, dv, &authorizerStub{allowed: true})
	h.add(sourceClaim())
	mode := corev1.PersistentVolumeFilesystem
	tmp := boundClaim(dv, "1Gi", mode)
	tmp.Name, tmp.Namespace, tmp.UID, tmp.OwnerReferences = tmpClaimName(dv), "src", "uid-tmp", nil
	tmp.Labels = map[string]string{LabelManagedBy: ManagedBy, LabelDataVolumeUID: string(dv.UID)}
	tmp.Annotations = map[string]string{AnnDataVolume: "ns/copy", AnnSourceUID: "uid-golden"}
	tmp.Spec.VolumeName = "pv-1"
	tmp.Spec.StorageClassName = ptrTo("local")
	h.add(tmp)
	pv := &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pv-1"}, Spec: corev1.PersistentVolumeSpec{
		PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimDelete,
		ClaimRef:                      &corev1.ObjectReference{Namespace: "src", Name: tmp.Name, UID: tmp.UID},
	}}
	_, err := h.kube.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{})
	assert.NilError(t, err)
	job := jobWith(crossJobName(dv), batchv1.JobComplete)
	job.Namespace = "src"
	job.Labels = map[string]string{LabelManagedBy: ManagedBy, LabelDataVolumeUID: string(dv.UID)}
	h.add(job)

	// The copy is done: the volume is kept, the target claim made pre-bound
	// to it, the Job and the temporary claim deleted, the volume pointed at
	// the target.
	h.sync(dv)
	got := h.dv("copy")
	assert.Equal(t, got.Status.Phase, v1beta1.CloneInProgress)
	assert.Equal(t, condition(got.Status, v1beta1.DataVolumeRunning).Reason, ReasonHandOver)
	target, err := h.kube.CoreV1().PersistentVolumeClaims("ns").Get(ctx, "copy", metav1.GetOptions{})
	assert.NilError(t, err)
	assert.Equal(t, target.Spec.VolumeName, "pv-1")
	assert.Assert(t, ownedBy(target, dv))
	assert.Equal(t, *target.Spec.StorageClassName, "local")
	assert.Equal(t, len(h.actions("delete", "jobs")), 1)
	_, err = h.kube.CoreV1().PersistentVolumeClaims("src").Get(ctx, tmp.Name, metav1.GetOptions{})
	assert.ErrorContains(t, err, "not found")
	// Once the temporary claim is gone, the volume is pointed at the target.
	h.sync(got)
	got = h.dv("copy")
	assert.Equal(t, got.Status.Phase, v1beta1.CloneInProgress)
	target, err = h.kube.CoreV1().PersistentVolumeClaims("ns").Get(ctx, "copy", metav1.GetOptions{})
	assert.NilError(t, err)
	assert.Equal(t, target.Annotations[AnnPodPhase], "Succeeded")
	stored, err := h.kube.CoreV1().PersistentVolumes().Get(ctx, "pv-1", metav1.GetOptions{})
	assert.NilError(t, err)
	assert.Equal(t, stored.Spec.PersistentVolumeReclaimPolicy, corev1.PersistentVolumeReclaimRetain, "never deleted mid-hand-over")
	assert.Equal(t, stored.Annotations[AnnReclaimPolicy], "Delete")
	assert.DeepEqual(t, *stored.Spec.ClaimRef, corev1.ObjectReference{Kind: "PersistentVolumeClaim", APIVersion: "v1", Namespace: "ns", Name: "copy", UID: target.UID})

	// The PersistentVolume controller binds them: Succeeded, the policy
	// back, the finalizer gone.
	target.Status.Phase = corev1.ClaimBound
	_, err = h.kube.CoreV1().PersistentVolumeClaims("ns").UpdateStatus(ctx, target, metav1.UpdateOptions{})
	assert.NilError(t, err)
	h.cache(target)
	h.sync(got)
	got = h.dv("copy")
	assert.Equal(t, got.Status.Phase, v1beta1.Succeeded)
	assert.Equal(t, condition(got.Status, v1beta1.DataVolumeReady).Status, corev1.ConditionTrue)
	assert.Assert(t, !slices.Contains(got.Finalizers, FinalizerCrossNamespaceClone))
	stored, err = h.kube.CoreV1().PersistentVolumes().Get(ctx, "pv-1", metav1.GetOptions{})
	assert.NilError(t, err)
	assert.Equal(t, stored.Spec.PersistentVolumeReclaimPolicy, corev1.PersistentVolumeReclaimDelete)
	_, labelled := stored.Labels[LabelDataVolumeUID]
	assert.Assert(t, !labelled)
	events := strings.Join(h.events(), "\n")
	assert.Assert(t, strings.Contains(events, "Normal CloneSucceeded Successfully cloned from src/golden into ns/copy"), events)
}

func TestDeletedCrossNamespaceCloneLeavesNothingInTheSourceNamespace(t *testing.T) {
	ctx := context.Background()
	dv := crossDV("copy", "good")
	dv.Finalizers = []string{FinalizerCrossNamespaceClone}
	now := metav1.Unix(900, 0)
	dv.DeletionTimestamp = &now
	h, _ := newCrossHarness(t, dv, &authorizerStub{allowed: true})
	tmp := sourceClaim()
	tmp.Name, tmp.UID = tmpClaimName(dv), "uid-tmp"
	tmp.Labels = map[string]string{LabelManagedBy: ManagedBy, LabelDataVolumeUID: string(dv.UID)}
	h.add(tmp)
	job := jobWith(crossJobName(dv))
	job.Namespace = "src"
	job.Labels = map[string]string{LabelManagedBy: ManagedBy, LabelDataVolumeUID: string(dv.UID)}
	h.add(job)
	pv := &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pv-1",
		Labels:      map[string]string{LabelDataVolumeUID: string(dv.UID)},
		Annotations: map[string]string{AnnReclaimPolicy: "Delete"}},
		Spec: corev1.PersistentVolumeSpec{PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain}}
	_, err := h.kube.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{})
	assert.NilError(t, err)

	h.sync(dv)
	assert.Equal(t, len(h.actions("delete", "jobs")), 1)
	_, err = h.kube.CoreV1().PersistentVolumeClaims("src").Get(ctx, tmp.Name, metav1.GetOptions{})
	assert.ErrorContains(t, err, "not found")
	stored, err := h.kube.CoreV1().PersistentVolumes().Get(ctx, "pv-1", metav1.GetOptions{})
	assert.NilError(t, err)
	assert.Equal(t, stored.Spec.PersistentVolumeReclaimPolicy, corev1.PersistentVolumeReclaimDelete, "reclaimed with the claim that had it")
	assert.Assert(t, !slices.Contains(h.dv("copy").Finalizers, FinalizerCrossNamespaceClone))
}

func TestJobsInTheSourceNamespaceWakeTheirDataVolume(t *testing.T) {
	dv := crossDV("copy", "good")
	h, _ := newCrossHarness(t, dv, &authorizerStub{allowed: true})
	job := jobWith(crossJobName(dv))
	job.Namespace = "src"
	job.Labels = map[string]string{LabelManagedBy: ManagedBy}
	job.Annotations = map[string]string{AnnDataVolume: "ns/copy"}
	h.c.enqueueController(job)
	assert.Equal(t, h.c.queue.Len(), 1)
	key, _ := h.c.queue.Get()
	assert.Equal(t, key, "ns/copy")
	// An annotation on something not ours wakes nothing.
	job.Labels = nil
	h.c.enqueueController(job)
	assert.Equal(t, h.c.queue.Len(), 0)
}

func ptrTo[T any](v T) *T { return &v }

// vmStub says every VM runs as the ServiceAccount "vm-runner".
type vmStub struct{}

func (vmStub) ServiceAccountOf(_ context.Context, namespace, name string, uid types.UID) (string, error) {
	if name != "vm" || uid != "uid-vm" {
		return "", fmt.Errorf("no VirtualMachine %s/%s with UID %s", namespace, name, uid)
	}
	return "vm-runner", nil
}

// byUser allows exactly the users named.
type byUser struct {
	allowed map[string]bool
	asked   []string
}

func (a *byUser) Authorize(_ context.Context, req cloneauth.Request) (cloneauth.Decision, error) {
	a.asked = append(a.asked, req.User.GetName())
	if a.allowed[req.User.GetName()] {
		return cloneauth.Decision{Allowed: true, Checked: true}, nil
	}
	return cloneauth.Decision{Checked: true, Missing: "create datavolumes.cdi.kubevirt.io/source in namespace \"src\""}, nil
}

// A template DataVolume that KubeVirt made (its requester virt-controller)
// is re-checked for the VM's ServiceAccount too, as KubeVirt's admitter
// and the webhook judge it.
func TestVirtualMachineCloneIsRecheckedForItsServiceAccount(t *testing.T) {
	dv := crossDV("copy", "good")
	dv.OwnerReferences = []metav1.OwnerReference{{APIVersion: "kubevirt.io/v1", Kind: "VirtualMachine", Name: "vm", UID: "uid-vm", Controller: ptrTo(true)}}
	auth := &byUser{allowed: map[string]bool{"alice": true}}
	h, _ := newCrossHarness(t, dv, nil)
	h.c.opts.CloneAuthorizer = auth
	h.c.opts.VirtualMachines = vmStub{}
	h.add(sourceClaim())

	h.sync(dv)
	got := h.dv("copy")
	running := condition(got.Status, v1beta1.DataVolumeRunning)
	assert.Equal(t, running.Reason, ReasonClonePermissionMissing)
	assert.Assert(t, strings.Contains(running.Message, `"system:serviceaccount:ns:vm-runner" (the VirtualMachine's ServiceAccount) may no longer clone src/golden`), running.Message)
	assert.DeepEqual(t, auth.asked, []string{"alice", "system:serviceaccount:ns:vm-runner"})
	assert.Equal(t, len(h.actions("create", "jobs")), 0)

	auth.allowed["system:serviceaccount:ns:vm-runner"] = true
	h.sync(got)
	assert.Equal(t, len(h.actions("create", "jobs")), 1)
}

// Asked for the network, the clone runs as a pair: a clone-target Job here
// behind a Service, a clone-source Job in the source namespace, a Secret
// on each side from one CA; done, they go.
func TestCrossNamespaceCloneOverTheNetworkRunsAPair(t *testing.T) {
	ctx := context.Background()
	dv := crossDV("copy", "good")
	dv.Annotations[AnnCloneStrategy] = CloneStrategyNetwork
	h, _ := newCrossHarness(t, dv, &authorizerStub{allowed: true})
	h.add(sourceClaim())

	h.sync(dv)
	target, err := h.kube.CoreV1().PersistentVolumeClaims("ns").Get(ctx, "copy", metav1.GetOptions{})
	assert.NilError(t, err)
	assert.Equal(t, target.Annotations[annClonePath], CloneStrategyNetwork)
	assert.Equal(t, target.Spec.VolumeName, "", "provisioned here, not handed over")
	targetJob, err := h.kube.BatchV1().Jobs("ns").Get(ctx, targetJobName(dv), metav1.GetOptions{})
	assert.NilError(t, err)
	args := targetJob.Spec.Template.Spec.Containers[0].Args
	assert.Equal(t, args[0], "clone-target")
	assert.Assert(t, slices.Contains(args, "--target=/data/disk.img"), args)
	for _, v := range targetJob.Spec.Template.Spec.Volumes {
		assert.Assert(t, v.PersistentVolumeClaim == nil || v.PersistentVolumeClaim.ClaimName == "copy", "the target mounts only its claim")
	}
	sourceJob, err := h.kube.BatchV1().Jobs("src").Get(ctx, sourceJobName(dv), metav1.GetOptions{})
	assert.NilError(t, err)
	args = sourceJob.Spec.Template.Spec.Containers[0].Args
	assert.Equal(t, args[0], "clone-source")
	assert.Assert(t, slices.Contains(args, "--target-address="+networkName(dv)+".ns.svc:8443"), args)
	assert.Equal(t, len(sourceJob.OwnerReferences), 0)
	for _, s := range []struct{ ns, name string }{{"ns", networkName(dv) + "-target"}, {"src", networkName(dv) + "-source"}} {
		secret, err := h.kube.CoreV1().Secrets(s.ns).Get(ctx, s.name, metav1.GetOptions{})
		assert.NilError(t, err)
		assert.Assert(t, len(secret.Data["ca.crt"]) > 0 && len(secret.Data["tls.key"]) > 0)
	}
	_, err = h.kube.CoreV1().Services("ns").Get(ctx, networkName(dv), metav1.GetOptions{})
	assert.NilError(t, err)

	// Both done: Succeeded, and the certificates and the Service are gone.
	targetJob.Status.Conditions = []batchv1.JobCondition{{Type: batchv1.JobComplete, Status: corev1.ConditionTrue}}
	sourceJob.Status.Conditions = []batchv1.JobCondition{{Type: batchv1.JobComplete, Status: corev1.ConditionTrue}}
	h.cache(targetJob)
	h.cache(sourceJob)
	target.Status.Phase = corev1.ClaimBound
	h.cache(target)
	h.sync(h.dv("copy"))
	assert.Equal(t, h.dv("copy").Status.Phase, v1beta1.Succeeded)
	_, err = h.kube.CoreV1().Secrets("src").Get(ctx, networkName(dv)+"-source", metav1.GetOptions{})
	assert.ErrorContains(t, err, "not found")
	_, err = h.kube.CoreV1().Services("ns").Get(ctx, networkName(dv), metav1.GetOptions{})
	assert.ErrorContains(t, err, "not found")
}
