// Package controller turns DataVolumes into claims and the Jobs that fill
// them, as kube-controller-manager's controllers are written: informers feed
// a rate-limited queue of keys, and each sync reads what exists, makes the
// smallest change towards what the DataVolume asks, and writes the status
// it observed. Nothing lives only in memory: the DataVolume's status, the
// claim's annotations and the labelled Jobs are the whole state, so a
// restarted controller carries on where the last one stopped.
package controller

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
	storagev1 "k8s.io/api/storage/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utilcache "k8s.io/apimachinery/pkg/util/cache"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	batchinformers "k8s.io/client-go/informers/batch/v1"
	coreinformers "k8s.io/client-go/informers/core/v1"
	storageinformers "k8s.io/client-go/informers/storage/v1"
	"k8s.io/client-go/kubernetes"
	batchlisters "k8s.io/client-go/listers/batch/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	storagelisters "k8s.io/client-go/listers/storage/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"

	"github.com/datavolume/datavolume/pkg/apis/cdi"
	"github.com/datavolume/datavolume/pkg/apis/cdi/v1beta1"
	"github.com/datavolume/datavolume/pkg/claims"
	"github.com/datavolume/datavolume/pkg/cloneauth"
	"github.com/datavolume/datavolume/pkg/cloner/exitcode"
	cdiclient "github.com/datavolume/datavolume/pkg/generated/clientset/versioned"
	cdiinformers "github.com/datavolume/datavolume/pkg/generated/informers/externalversions/cdi/v1beta1"
	cdilisters "github.com/datavolume/datavolume/pkg/generated/listers/cdi/v1beta1"
	"github.com/datavolume/datavolume/pkg/plan"
)

// Options configure the controller.
type Options struct {
	Jobs JobOptions
	// HonorWaitForFirstConsumer leaves a claim of a WaitForFirstConsumer
	// class unbound until a pod that uses it is scheduled (phase
	// WaitForFirstConsumer), unless the DataVolume asks for immediate
	// binding. Off, the data-moving pod is the first consumer.
	HonorWaitForFirstConsumer bool
	// ProgressEvery is how often a running transfer's progress is read and
	// written.
	ProgressEvery time.Duration
	// Grants verifies the grant datavolume-apiserver signed on an allowed
	// cross-namespace clone; nil, no such clone moves data.
	Grants GrantVerifier
	// CloneAuthorizer asks again, right before data moves, whether the
	// grant's requester may still clone the source.
	CloneAuthorizer CloneAuthorizer
	// VirtualMachines finds the ServiceAccount of the VirtualMachine that
	// controls a DataVolume, as KubeVirt finds it: its clone is re-checked
	// for that account too. Nil, a VM-owned clone waits.
	VirtualMachines VirtualMachines
	// CrashAfter, for tests only, is called after each step of a volume's
	// hand-over; the test's hook ends the process there.
	CrashAfter func(dv *v1beta1.DataVolume, step string)
}

// GrantVerifier checks a clone grant as of a time: the DataVolume's
// creation, so a clone that waits long for its source is not stranded by
// the grant's expiry. The error errors.Is one of cloneauth's ErrGrant
// errors.
type GrantVerifier interface {
	Verify(token string, want cloneauth.Target, at time.Time) (cloneauth.Grant, error)
}

// VirtualMachines reads a KubeVirt VirtualMachine's ServiceAccount.
type VirtualMachines interface {
	// ServiceAccountOf is the ServiceAccount of the VM namespace/name with
	// uid; an error when there is no such VM.
	ServiceAccountOf(ctx context.Context, namespace, name string, uid types.UID) (string, error)
}

// CloneAuthorizer decides a clone by SubjectAccessReview, as
// *cloneauth.Authorizer does.
type CloneAuthorizer interface {
	Authorize(ctx context.Context, req cloneauth.Request) (cloneauth.Decision, error)
}

// Informers are the caches the controller reads.
type Informers struct {
	DataVolumes    cdiinformers.DataVolumeInformer
	Claims         coreinformers.PersistentVolumeClaimInformer
	Jobs           batchinformers.JobInformer
	Pods           coreinformers.PodInformer
	StorageClasses storageinformers.StorageClassInformer
}

// Controller reconciles DataVolumes.
type Controller struct {
	kube     kubernetes.Interface
	cdi      cdiclient.Interface
	scheme   *runtime.Scheme
	recorder record.EventRecorder
	opts     Options
	progress *progressReader
	metrics  *metrics

	dataVolumes    cdilisters.DataVolumeLister
	claims         corelisters.PersistentVolumeClaimLister
	jobs           batchlisters.JobLister
	pods           corelisters.PodLister
	podIndex       cache.Indexer
	dvIndex        cache.Indexer
	storageClasses storagelisters.StorageClassLister
	synced         []cache.InformerSynced

	queue workqueue.TypedRateLimitingInterface[string]
	// deletedJobs holds the UIDs of Jobs a DELETE was sent for, for a while
	// after: a sync that read a Job from the cache just before the informer
	// dropped it must not send a second DELETE. UIDs are never reused.
	deletedJobs *utilcache.LRUExpireCache
	// progressReads holds the UIDs of the pods whose progress was read in
	// the last ProgressEvery. A status write that changes the progress
	// brings the DataVolume back through the informer at once: without
	// this, that sync would read again and write again, a write every few
	// milliseconds for as long as the progress moves.
	progressReads *utilcache.LRUExpireCache
	// recheck spaces out the permission checks of a clone that waits for
	// its requester to be allowed again.
	recheck workqueue.TypedRateLimiter[string]
	now     func() metav1.Time
}

// deletedJobsTTL is how long a Job's DELETE is remembered: far longer than
// an informer takes to see it gone.
const deletedJobsTTL = 10 * time.Minute

// errStaleCache says the cache is behind the API: the sync is retried.
var errStaleCache = errors.New("the DataVolume changed since it was cached")

// podsByClaim indexes pods by namespace/claim of each claim they mount.
const podsByClaim = "byClaim"

// dataVolumesBySource indexes clone DataVolumes by namespace/claim of
// their source.
const dataVolumesBySource = "bySource"

// New wires a controller to its informers. scheme converts DataVolumes to
// the internal type and names them in Events.
func New(kube kubernetes.Interface, cdiClient cdiclient.Interface, scheme *runtime.Scheme, recorder record.EventRecorder,
	inf Informers, opts Options) (*Controller, error) {
	if opts.ProgressEvery <= 0 {
		opts.ProgressEvery = 3 * time.Second
	}
	c := &Controller{
		kube: kube, cdi: cdiClient, scheme: scheme, recorder: recorder, opts: opts,
		progress:       newProgressReader(opts.Jobs.MetricsPort),
		deletedJobs:    utilcache.NewLRUExpireCache(10000),
		progressReads:  utilcache.NewLRUExpireCache(10000),
		dataVolumes:    inf.DataVolumes.Lister(),
		claims:         inf.Claims.Lister(),
		jobs:           inf.Jobs.Lister(),
		pods:           inf.Pods.Lister(),
		podIndex:       inf.Pods.Informer().GetIndexer(),
		storageClasses: inf.StorageClasses.Lister(),
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "datavolume"}),
		recheck: workqueue.NewTypedItemExponentialFailureRateLimiter[string](2*time.Second, time.Minute),
		now:     metav1.Now,
	}
	c.metrics = newMetrics(c.dataVolumes)
	if err := inf.Pods.Informer().AddIndexers(cache.Indexers{podsByClaim: indexPodsByClaim}); err != nil {
		return nil, fmt.Errorf("indexing pods by claim: %w", err)
	}
	if err := inf.DataVolumes.Informer().AddIndexers(cache.Indexers{dataVolumesBySource: indexDataVolumesBySource}); err != nil {
		return nil, fmt.Errorf("indexing DataVolumes by clone source: %w", err)
	}
	c.dvIndex = inf.DataVolumes.Informer().GetIndexer()
	handlers := []struct {
		informer cache.SharedIndexInformer
		handler  cache.ResourceEventHandler
	}{
		{inf.DataVolumes.Informer(), cache.ResourceEventHandlerFuncs{
			AddFunc:    c.enqueue,
			UpdateFunc: func(_, obj any) { c.enqueue(obj) },
		}},
		{inf.Claims.Informer(), c.ownerHandler()},
		{inf.Jobs.Informer(), c.ownerHandler()},
		{inf.Pods.Informer(), c.podHandler()},
	}
	for _, h := range handlers {
		if _, err := h.informer.AddEventHandler(h.handler); err != nil {
			return nil, err
		}
		c.synced = append(c.synced, h.informer.HasSynced)
	}
	c.synced = append(c.synced, inf.StorageClasses.Informer().HasSynced)
	return c, nil
}

// Collectors are the controller's own Prometheus metrics.
func (c *Controller) Collectors() []metricsCollector { return c.metrics.collectors() }

func indexPodsByClaim(obj any) ([]string, error) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return nil, nil
	}
	var keys []string
	for _, v := range pod.Spec.Volumes {
		if v.PersistentVolumeClaim != nil {
			keys = append(keys, pod.Namespace+"/"+v.PersistentVolumeClaim.ClaimName)
		}
	}
	return keys, nil
}

func indexDataVolumesBySource(obj any) ([]string, error) {
	dv, ok := obj.(*v1beta1.DataVolume)
	if !ok || dv.Spec.Source == nil || dv.Spec.Source.PVC == nil {
		return nil, nil
	}
	ns := dv.Spec.Source.PVC.Namespace
	if ns == "" {
		ns = dv.Namespace
	}
	return []string{ns + "/" + dv.Spec.Source.PVC.Name}, nil
}

func (c *Controller) enqueue(obj any) {
	key, err := cache.MetaNamespaceKeyFunc(obj)
	if err != nil {
		utilruntime.HandleError(err)
		return
	}
	c.queue.Add(key)
}

// enqueueController enqueues the DataVolume that controls obj, if one
// does, or that obj works for in another namespace.
func (c *Controller) enqueueController(obj metav1.Object) {
	if key := dataVolumeKeyOf(obj); key != "" {
		c.queue.Add(key)
		return
	}
	if ref := metav1.GetControllerOf(obj); ref != nil && ref.Kind == "DataVolume" && strings.HasPrefix(ref.APIVersion, v1beta1.GroupName+"/") {
		c.queue.Add(obj.GetNamespace() + "/" + ref.Name)
	}
}

// ownerHandler enqueues the DataVolume that controls a claim or a Job.
func (c *Controller) ownerHandler() cache.ResourceEventHandler {
	enqueueOwner := func(obj any) {
		if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = tomb.Obj
		}
		meta, err := metaOf(obj)
		if err != nil {
			return
		}
		c.enqueueController(meta)
		// A clone waiting for its source hears of the source's changes.
		if claim, ok := obj.(*corev1.PersistentVolumeClaim); ok {
			c.enqueueClonesOf(claim.Namespace, claim.Name)
		}
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueueOwner,
		UpdateFunc: func(_, obj any) { enqueueOwner(obj) },
		DeleteFunc: enqueueOwner,
	}
}

// podHandler enqueues the DataVolume a pod of ours works for, and clones
// waiting for a claim the pod mounts.
func (c *Controller) podHandler() cache.ResourceEventHandler {
	handle := func(obj any) {
		if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = tomb.Obj
		}
		pod, ok := obj.(*corev1.Pod)
		if !ok {
			return
		}
		if pod.Labels[LabelManagedBy] == ManagedBy {
			if job, err := c.jobs.Jobs(pod.Namespace).Get(pod.Labels[labelJobName]); err == nil {
				c.enqueueController(job)
			}
		}
		for _, v := range pod.Spec.Volumes {
			if v.PersistentVolumeClaim != nil {
				c.enqueueClonesOf(pod.Namespace, v.PersistentVolumeClaim.ClaimName)
			}
		}
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    handle,
		UpdateFunc: func(_, obj any) { handle(obj) },
		DeleteFunc: handle,
	}
}

// enqueueClonesOf enqueues the unfinished DataVolumes, of any namespace,
// that clone claim of namespace.
func (c *Controller) enqueueClonesOf(namespace, claim string) {
	objs, err := c.dvIndex.ByIndex(dataVolumesBySource, namespace+"/"+claim)
	if err != nil {
		return
	}
	for _, obj := range objs {
		dv, ok := obj.(*v1beta1.DataVolume)
		if !ok || dv.Status.Phase == v1beta1.Succeeded || dv.Status.Phase == v1beta1.Failed {
			continue
		}
		c.queue.Add(dv.Namespace + "/" + dv.Name)
	}
}

func metaOf(obj any) (metav1.Object, error) {
	m, ok := obj.(metav1.Object)
	if !ok {
		return nil, fmt.Errorf("%T has no object metadata", obj)
	}
	return m, nil
}

// Run syncs with workers goroutines until ctx is done.
func (c *Controller) Run(ctx context.Context, workers int) error {
	defer utilruntime.HandleCrash()
	defer c.queue.ShutDown()
	log := logr.FromContextOrDiscard(ctx)
	log.Info("Waiting for caches")
	if !cache.WaitForNamedCacheSync("datavolume", ctx.Done(), c.synced...) {
		return errors.New("caches did not sync")
	}
	log.Info("Syncing DataVolumes", "workers", workers)
	for range workers {
		go wait.UntilWithContext(ctx, c.worker, time.Second)
	}
	<-ctx.Done()
	return nil
}

func (c *Controller) worker(ctx context.Context) {
	for c.processNext(ctx) {
	}
}

func (c *Controller) processNext(ctx context.Context) bool {
	key, quit := c.queue.Get()
	if quit {
		return false
	}
	defer c.queue.Done(key)
	log := logr.FromContextOrDiscard(ctx).WithValues("datavolume", key)
	requeue, err := c.sync(logr.NewContext(ctx, log), key)
	switch {
	case err != nil:
		if apierrors.IsConflict(err) {
			log.V(2).Info("Conflict; retrying", "err", err.Error())
		} else {
			log.Error(err, "Sync failed; retrying")
		}
		c.queue.AddRateLimited(key)
	case requeue > 0:
		c.queue.Forget(key)
		c.queue.AddAfter(key, requeue)
	default:
		c.queue.Forget(key)
	}
	return true
}

// sync reconciles one DataVolume. It returns when to look again without an
// event, for progress.
func (c *Controller) sync(ctx context.Context, key string) (time.Duration, error) {
	namespace, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return 0, nil
	}
	dv, err := c.dataVolumes.DataVolumes(namespace).Get(name)
	if apierrors.IsNotFound(err) {
		// The garbage collector removes its claim and Jobs.
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	internal := &cdi.DataVolume{}
	if err := c.scheme.Convert(dv, internal, nil); err != nil {
		return 0, fmt.Errorf("reading DataVolume %s: %w", key, err)
	}
	p := plan.For(namespace, &internal.Spec)
	if p.Command == plan.CommandNone || p.Target == nil {
		// Validation refuses such specs; one stored before it is left alone.
		return 0, nil
	}
	o := &observation{dv: dv, plan: p, now: c.now()}
	if dv.DeletionTimestamp != nil {
		if p.IsCrossNamespace(namespace) {
			// The garbage collector removes what is in this namespace; the
			// finalizer is for what is in the source's.
			return 0, c.finalize(ctx, o)
		}
		return 0, nil
	}
	done := dv.Status.Phase == v1beta1.Succeeded || dv.Status.Phase == v1beta1.Failed

	claim, err := c.claims.PersistentVolumeClaims(namespace).Get(name)
	switch {
	case apierrors.IsNotFound(err):
		claim = nil
	case err != nil:
		return 0, err
	case !ownedBy(claim, dv):
		o.foreignClaim = true
		claim = nil
	}
	o.claim = claim

	var (
		source  *corev1.PersistentVolumeClaim
		requeue time.Duration
	)
	if p.IsCrossNamespace(namespace) {
		requeue, err = c.syncCrossNamespace(ctx, o, internal, done)
		if errors.Is(err, errStaleCache) {
			return requeue, nil
		}
		if err != nil {
			return 0, err
		}
	} else if !done {
		if source, err = c.cloneSource(o); err != nil {
			return 0, err
		}
		if o.claim == nil && !o.foreignClaim && o.wait == nil {
			if err := c.createClaim(ctx, o, internal, source); err != nil {
				return 0, err
			}
		}
		if o.claim != nil && o.wait == nil {
			c.waitForConsumer(o)
		}
		if o.claim != nil && o.wait == nil && source != nil {
			c.waitForSource(o, source)
		}
	}

	if o.claim != nil && !p.IsCrossNamespace(namespace) {
		requeue, err = c.syncJob(ctx, o, internal, source, done)
		if errors.Is(err, errStaleCache) {
			// Look again once the cache has caught up; write nothing now.
			return requeue, nil
		}
		if err != nil {
			return 0, err
		}
	}

	dv = o.dv // a finalizer's update makes a newer one
	status, events := desiredStatus(o)
	if !apiequality.Semantic.DeepEqual(status, dv.Status) {
		updated := dv.DeepCopy()
		updated.Status = status
		if _, err := c.cdi.CdiV1beta1().DataVolumes(namespace).UpdateStatus(ctx, updated, metav1.UpdateOptions{}); err != nil {
			return 0, fmt.Errorf("writing the status of DataVolume %s: %w", key, err)
		}
		for _, e := range events {
			c.recorder.Event(dv, e.eventType, e.reason, e.message)
		}
		logr.FromContextOrDiscard(ctx).V(2).Info("Status", "phase", status.Phase, "progress", status.Progress)
		if status.Phase != dv.Status.Phase {
			c.metrics.observeTransition(dv, status.Phase, o)
		}
	}
	// Also once done: the write that follows Succeeded can fail on a claim
	// the cache had not caught up with (a conflict), and the retry comes
	// with the DataVolume already Succeeded. It writes nothing when the
	// annotations are there.
	if o.claim != nil && !o.handingOver {
		if err := c.annotateClaim(ctx, o, status.Phase); err != nil {
			return 0, err
		}
	}
	if status.Phase == v1beta1.Succeeded && o.job != nil {
		// The Job's work is done; a failed one stays for kubectl logs.
		if err := c.deleteJob(ctx, o.job); err != nil {
			return 0, err
		}
		if p.Command == plan.CommandUpload {
			if err := c.deleteUploadEndpoint(ctx, dv); err != nil {
				return 0, err
			}
		}
	}
	return requeue, nil
}

// cloneSource finds a clone's source claim, or sets why the clone waits.
func (c *Controller) cloneSource(o *observation) (*corev1.PersistentVolumeClaim, error) {
	if !o.plan.IsClone() {
		return nil, nil
	}
	src := o.plan.CloneSource
	source, err := c.claims.PersistentVolumeClaims(src.Namespace).Get(src.Name)
	if apierrors.IsNotFound(err) {
		o.wait = &waiting{reason: ReasonCloneWithoutSource, message: fmt.Sprintf("The source pvc %s doesn't exist", src.Name)}
		return nil, nil
	}
	return source, err
}

// createClaim makes the DataVolume's claim. A claim the API refuses (quota,
// invalid) is a condition on the DataVolume, not a retry loop.
func (c *Controller) createClaim(ctx context.Context, o *observation, internal *cdi.DataVolume, source *corev1.PersistentVolumeClaim) error {
	size, err := claimSize(o.plan, source, c.opts.Jobs.FilesystemOverhead)
	if err != nil {
		o.claimError = &waiting{reason: ReasonClaimNotValid, message: err.Error()}
		return nil
	}
	claim := renderClaim(o.dv, internal, o.plan, size)
	created, err := c.kube.CoreV1().PersistentVolumeClaims(claim.Namespace).Create(ctx, claim, metav1.CreateOptions{})
	switch {
	case err == nil:
		o.claim = created
		return nil
	case apierrors.IsAlreadyExists(err):
		// The cache was behind; the next sync sees it.
		return err
	case apierrors.IsForbidden(err) && strings.Contains(err.Error(), "exceeded quota"):
		o.claimError = &waiting{reason: ReasonExceededQuota, message: err.Error()}
		return nil
	case apierrors.IsInvalid(err) || apierrors.IsForbidden(err):
		o.claimError = &waiting{reason: ReasonClaimNotValid, message: err.Error()}
		return nil
	default:
		return fmt.Errorf("creating PersistentVolumeClaim %s/%s: %w", claim.Namespace, claim.Name, err)
	}
}

// waitForConsumer holds the transfer of a claim whose class binds it only
// for a consuming pod, when the controller honours that.
func (c *Controller) waitForConsumer(o *observation) {
	if !c.opts.HonorWaitForFirstConsumer || o.claim.Status.Phase == corev1.ClaimBound ||
		o.dv.Annotations[AnnImmediateBinding] == "true" || o.claim.Spec.StorageClassName == nil {
		return
	}
	class, err := c.storageClasses.Get(*o.claim.Spec.StorageClassName)
	if err != nil || class.VolumeBindingMode == nil || *class.VolumeBindingMode != storagev1.VolumeBindingWaitForFirstConsumer {
		return
	}
	o.wait = &waiting{phase: v1beta1.WaitForFirstConsumer, reason: ReasonWaitForFirstConsumer,
		message: fmt.Sprintf("PVC %s waits for a pod that uses it (StorageClass %s binds on first consumer); annotate the DataVolume %s=true to populate it now", o.claim.Name, class.Name, AnnImmediateBinding)}
}

// waitForSource holds a clone while a pod other than ours uses its source,
// or while the source is a DataVolume still being filled.
func (c *Controller) waitForSource(o *observation, source *corev1.PersistentVolumeClaim) {
	if ref := metav1.GetControllerOf(source); ref != nil && ref.Kind == "DataVolume" {
		if owner, err := c.dataVolumes.DataVolumes(source.Namespace).Get(ref.Name); err == nil && owner.UID == ref.UID &&
			owner.Status.Phase != v1beta1.Succeeded {
			o.wait = &waiting{phase: v1beta1.CloneScheduled, reason: ReasonSourceNotReady,
				message: fmt.Sprintf("The source pvc %s/%s is not fully imported (DataVolume phase %s)", source.Namespace, source.Name, orPending(owner.Status.Phase))}
			return
		}
	}
	objs, err := c.podIndex.ByIndex(podsByClaim, source.Namespace+"/"+source.Name)
	if err != nil {
		return
	}
	var pods []*corev1.Pod
	for _, obj := range objs {
		if pod, ok := obj.(*corev1.Pod); ok && pod.Labels[LabelManagedBy] != ManagedBy {
			pods = append(pods, pod)
		}
	}
	if users := claims.PodsUsing(pods, source.Name); len(users) > 0 {
		o.wait = &waiting{phase: v1beta1.CloneScheduled, reason: ReasonCloneSourceInUse,
			message: fmt.Sprintf("pod %s/%s using PersistentVolumeClaim %s", source.Namespace, strings.Join(users, ", "), source.Name)}
	}
}

func orPending(p v1beta1.DataVolumePhase) v1beta1.DataVolumePhase {
	if p == "" {
		return v1beta1.Pending
	}
	return p
}

// syncJob makes sure the one Job that moves the data exists, and reads its
// state into o. It returns when to read progress again.
func (c *Controller) syncJob(ctx context.Context, o *observation, internal *cdi.DataVolume, source *corev1.PersistentVolumeClaim, done bool) (time.Duration, error) {
	owned, err := c.jobs.Jobs(o.dv.Namespace).List(labels.SelectorFromSet(labels.Set{LabelDataVolumeUID: string(o.dv.UID)}))
	if err != nil {
		return 0, err
	}
	scratch := o.plan.ScratchUpFront() || o.claim.Annotations[AnnRequiresScratch] == "true"
	want := jobName(o.plan, o.dv.Name, scratch)
	for _, job := range owned {
		switch {
		case job.Name == want && !done:
			o.job = job
		case job.DeletionTimestamp == nil && !(done && jobFinished(job, batchv1.JobFailed)) && !c.deleted(job):
			// A Job of an earlier attempt (before scratch), or a finished
			// DataVolume's: it has nothing left to do.
			if err := c.deleteJob(ctx, job); err != nil {
				return 0, err
			}
		}
	}
	if done {
		return 0, nil
	}
	if o.job == nil {
		if o.wait != nil {
			return 0, nil
		}
		// A Job is a writer: never start one from a stale cache. The Job of
		// a DataVolume that just succeeded is deleted right after its status
		// is written, and a cache that has the deletion but not the status
		// would start the copy again.
		live, err := c.cdi.CdiV1beta1().DataVolumes(o.dv.Namespace).Get(ctx, o.dv.Name, metav1.GetOptions{})
		if err != nil {
			return 0, fmt.Errorf("reading DataVolume %s/%s before starting its Job: %w", o.dv.Namespace, o.dv.Name, err)
		}
		if live.ResourceVersion != o.dv.ResourceVersion || live.UID != o.dv.UID {
			return time.Second, errStaleCache
		}
		if o.plan.Command == plan.CommandUpload {
			if err := c.ensureUploadEndpoint(ctx, o.dv); err != nil {
				return 0, err
			}
		}
		job, err := renderJob(jobInput{dv: o.dv, spec: &internal.Spec, plan: o.plan, claim: o.claim, source: source, scratch: scratch, opts: &c.opts.Jobs})
		if err != nil {
			return 0, err
		}
		created, err := c.kube.BatchV1().Jobs(job.Namespace).Create(ctx, job, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return 0, fmt.Errorf("creating Job %s/%s: %w", job.Namespace, job.Name, err)
		}
		if err == nil {
			o.job = created
			logr.FromContextOrDiscard(ctx).Info("Created Job", "job", job.Name, "command", o.plan.Command, "scratch", scratch)
		}
		return 0, nil
	}

	requeue, err := c.observePods(ctx, o)
	if err != nil {
		return 0, err
	}
	if jobFinished(o.job, batchv1.JobFailed) && o.failure != nil && o.failure.ExitCode == exitcode.NeedsScratch && !scratch {
		// Not a failure: the import is rerun with scratch space.
		if err := c.requireScratch(ctx, o); err != nil {
			return 0, err
		}
		o.wait = &waiting{phase: wordsFor(o.plan).scheduled, reason: ReasonScratchRequired, message: "scratch space required and none found"}
		o.job, o.pod, o.failure = nil, nil, nil
		return 0, nil
	}
	return requeue, nil
}

// observePods reads the pods of o.job: the cloner's summaries of those that
// ended, the newest one, and a running one's progress. It returns when to
// read progress again.
func (c *Controller) observePods(ctx context.Context, o *observation) (time.Duration, error) {
	pods, err := c.pods.Pods(o.job.Namespace).List(labels.SelectorFromSet(labels.Set{labelJobName: o.job.Name}))
	if err != nil {
		return 0, err
	}
	slices.SortFunc(pods, func(a, b *corev1.Pod) int { return a.CreationTimestamp.Compare(b.CreationTimestamp.Time) })
	for _, pod := range pods {
		switch pod.Status.Phase {
		case corev1.PodFailed:
			o.failure = terminationSummary(pod)
		case corev1.PodSucceeded:
			o.result = terminationSummary(pod)
		}
	}
	if len(pods) > 0 {
		o.pod = pods[len(pods)-1]
	}
	if o.pod != nil && o.pod.Status.Phase == corev1.PodRunning && o.plan.Command != plan.CommandUpload {
		if _, recent := c.progressReads.Get(o.pod.UID); recent {
			// The status keeps the progress it has; the sync queued by
			// the last read (later than this entry expires) reads again.
			return c.opts.ProgressEvery, nil
		}
		c.progressReads.Add(o.pod.UID, struct{}{}, c.opts.ProgressEvery)
		progress, err := c.progress.read(ctx, o.pod)
		if err != nil {
			logr.FromContextOrDiscard(ctx).V(3).Info("No progress yet", "err", err.Error())
		}
		o.progress = progress
		return c.opts.ProgressEvery, nil
	}
	return 0, nil
}

// requireScratch marks the claim as needing scratch and removes the Job
// that found out.
func (c *Controller) requireScratch(ctx context.Context, o *observation) error {
	claim := o.claim.DeepCopy()
	if claim.Annotations == nil {
		claim.Annotations = map[string]string{}
	}
	claim.Annotations[AnnRequiresScratch] = "true"
	updated, err := c.kube.CoreV1().PersistentVolumeClaims(claim.Namespace).Update(ctx, claim, metav1.UpdateOptions{})
	if err != nil {
		return fmt.Errorf("marking PersistentVolumeClaim %s/%s as needing scratch space: %w", claim.Namespace, claim.Name, err)
	}
	o.claim = updated
	return c.deleteJob(ctx, o.job)
}

// annotateClaim keeps CDI's pod annotations on the claim, written when the
// pod's phase or restarts change.
func (c *Controller) annotateClaim(ctx context.Context, o *observation, phase v1beta1.DataVolumePhase) error {
	// Written at the end (and on a retry): a write per pod phase would
	// cost every import one more update of its claim.
	podPhase := ""
	switch phase {
	case v1beta1.Succeeded:
		podPhase = string(corev1.PodSucceeded)
	case v1beta1.Failed:
		podPhase = string(corev1.PodFailed)
	}
	restarts := ""
	if n := retries(o.job); n > 0 {
		restarts = fmt.Sprint(n)
	}
	want := map[string]string{AnnPodPhase: podPhase, AnnPodRestarts: restarts}
	changed := false
	for k, v := range want {
		if v != "" && o.claim.Annotations[k] != v {
			changed = true
		}
	}
	if !changed {
		return nil
	}
	claim := o.claim.DeepCopy()
	if claim.Annotations == nil {
		claim.Annotations = map[string]string{}
	}
	for k, v := range want {
		if v != "" {
			claim.Annotations[k] = v
		}
	}
	updated, err := c.kube.CoreV1().PersistentVolumeClaims(claim.Namespace).Update(ctx, claim, metav1.UpdateOptions{})
	if err != nil {
		return fmt.Errorf("annotating PersistentVolumeClaim %s/%s: %w", claim.Namespace, claim.Name, err)
	}
	o.claim = updated
	return nil
}

// deleted says a delete of this Job was already sent: the cache has not
// caught up with it yet, and a second DELETE would be one more write.
func (c *Controller) deleted(job *batchv1.Job) bool {
	_, ok := c.deletedJobs.Get(job.UID)
	return ok || job.DeletionTimestamp != nil
}

func (c *Controller) deleteJob(ctx context.Context, job *batchv1.Job) error {
	if c.deleted(job) {
		return nil
	}
	background := metav1.DeletePropagationBackground
	err := c.kube.BatchV1().Jobs(job.Namespace).Delete(ctx, job.Name, metav1.DeleteOptions{
		PropagationPolicy: &background,
		Preconditions:     &metav1.Preconditions{UID: &job.UID},
	})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("deleting Job %s/%s: %w", job.Namespace, job.Name, err)
	}
	c.deletedJobs.Add(job.UID, struct{}{}, deletedJobsTTL)
	return nil
}

// ensureUploadEndpoint makes the upload server's TLS Secret and Service.
func (c *Controller) ensureUploadEndpoint(ctx context.Context, dv *v1beta1.DataVolume) error {
	secret, err := renderUploadSecret(dv)
	if err != nil {
		return err
	}
	if _, err := c.kube.CoreV1().Secrets(dv.Namespace).Create(ctx, secret, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating the upload server's Secret %s/%s: %w", dv.Namespace, secret.Name, err)
	}
	svc := renderUploadService(dv)
	if _, err := c.kube.CoreV1().Services(dv.Namespace).Create(ctx, svc, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating the upload Service %s/%s: %w", dv.Namespace, svc.Name, err)
	}
	return nil
}

// deleteUploadEndpoint removes them once the upload is done.
func (c *Controller) deleteUploadEndpoint(ctx context.Context, dv *v1beta1.DataVolume) error {
	name := uploadServiceName(dv)
	if err := c.kube.CoreV1().Services(dv.Namespace).Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting the upload Service %s/%s: %w", dv.Namespace, name, err)
	}
	if err := c.kube.CoreV1().Secrets(dv.Namespace).Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting the upload Secret %s/%s: %w", dv.Namespace, name, err)
	}
	return nil
}
