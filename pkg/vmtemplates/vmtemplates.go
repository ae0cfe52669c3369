// Package vmtemplates creates the DataVolumes of VirtualMachines'
// dataVolumeTemplates where KubeVirt is absent, as KubeVirt's
// virt-controller does: one DataVolume per template, named by it, in the
// VM's namespace, controlled by the VM (deleting the VM deletes it and its
// claim), labelled kubevirt.io/created-by with the VM's UID, with
// KubeVirt's Events on the VM. A DataVolume of that name that exists is
// left as it is: one created on its own and referenced in the VM's volumes
// outlives the VM.
//
// The controller that runs this holds no clone permission: datavolume-apiserver
// judges each clone it creates for the VM's ServiceAccount (see
// --vm-template-creator).
package vmtemplates

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/ptr"

	"github.com/datavolume/datavolume/pkg/apis/cdi/v1beta1"
	cdiclient "github.com/datavolume/datavolume/pkg/generated/clientset/versioned"
	cdiinformers "github.com/datavolume/datavolume/pkg/generated/informers/externalversions/cdi/v1beta1"
	cdilisters "github.com/datavolume/datavolume/pkg/generated/listers/cdi/v1beta1"
	"github.com/datavolume/datavolume/pkg/kubevirt"
)

// KubeVirt's Event reasons on the VM.
const (
	ReasonCreated      = "SuccessfulDataVolumeCreate"
	ReasonCreateFailed = "FailedDataVolumeCreate"
)

// Controller creates templates' DataVolumes.
type Controller struct {
	cdi         cdiclient.Interface
	recorder    record.EventRecorder
	vms         cache.GenericLister
	dataVolumes cdilisters.DataVolumeLister
	synced      []cache.InformerSynced
	queue       workqueue.TypedRateLimitingInterface[string]
}

// New wires the controller to a VirtualMachine informer (dynamic) and the
// DataVolume informer.
func New(cdi cdiclient.Interface, recorder record.EventRecorder, vms informers.GenericInformer, dataVolumes cdiinformers.DataVolumeInformer) (*Controller, error) {
	c := &Controller{
		cdi: cdi, recorder: recorder,
		vms:         vms.Lister(),
		dataVolumes: dataVolumes.Lister(),
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "vmtemplates"}),
	}
	if _, err := vms.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.enqueue,
		UpdateFunc: func(_, obj any) { c.enqueue(obj) },
	}); err != nil {
		return nil, err
	}
	// A template's DataVolume deleted while its VM lives is made again.
	if _, err := dataVolumes.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		DeleteFunc: func(obj any) {
			if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = tomb.Obj
			}
			if dv, ok := obj.(*v1beta1.DataVolume); ok {
				if ref := metav1.GetControllerOf(dv); ref != nil && ref.Kind == "VirtualMachine" {
					c.queue.Add(dv.Namespace + "/" + ref.Name)
				}
			}
		},
	}); err != nil {
		return nil, err
	}
	c.synced = []cache.InformerSynced{vms.Informer().HasSynced, dataVolumes.Informer().HasSynced}
	return c, nil
}

func (c *Controller) enqueue(obj any) {
	key, err := cache.MetaNamespaceKeyFunc(obj)
	if err != nil {
		utilruntime.HandleError(err)
		return
	}
	c.queue.Add(key)
}

// Run syncs with workers goroutines until ctx is done.
func (c *Controller) Run(ctx context.Context, workers int) error {
	defer utilruntime.HandleCrash()
	defer c.queue.ShutDown()
	if !cache.WaitForNamedCacheSync("vmtemplates", ctx.Done(), c.synced...) {
		return errors.New("caches did not sync")
	}
	for range workers {
		go wait.UntilWithContext(ctx, func(ctx context.Context) {
			for c.processNext(ctx) {
			}
		}, time.Second)
	}
	<-ctx.Done()
	return nil
}

func (c *Controller) processNext(ctx context.Context) bool {
	key, quit := c.queue.Get()
	if quit {
		return false
	}
	defer c.queue.Done(key)
	log := logr.FromContextOrDiscard(ctx).WithValues("virtualmachine", key)
	if err := c.sync(logr.NewContext(ctx, log), key); err != nil {
		log.Error(err, "Sync failed; retrying")
		c.queue.AddRateLimited(key)
		return true
	}
	c.queue.Forget(key)
	return true
}

func (c *Controller) sync(ctx context.Context, key string) error {
	namespace, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	obj, err := c.vms.ByNamespace(namespace).Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return fmt.Errorf("VirtualMachine %s is a %T", key, obj)
	}
	if u.GetDeletionTimestamp() != nil {
		return nil
	}
	raw, err := u.MarshalJSON()
	if err != nil {
		return err
	}
	vm, err := kubevirt.Decode(raw)
	if err != nil {
		return fmt.Errorf("reading VirtualMachine %s: %w", key, err)
	}
	var errs []error
	for i := range vm.Spec.DataVolumeTemplates {
		template := &vm.Spec.DataVolumeTemplates[i]
		if _, err := c.dataVolumes.DataVolumes(namespace).Get(template.Metadata.Name); err == nil || !apierrors.IsNotFound(err) {
			continue
		}
		dv, err := render(u, template)
		if err != nil {
			c.recorder.Eventf(u, corev1.EventTypeWarning, ReasonCreateFailed, "Error creating DataVolume %s: %v", template.Metadata.Name, err)
			continue
		}
		created, err := c.cdi.CdiV1beta1().DataVolumes(namespace).Create(ctx, dv, metav1.CreateOptions{})
		switch {
		case err == nil:
			c.recorder.Eventf(u, corev1.EventTypeNormal, ReasonCreated, "Created DataVolume %s", created.Name)
			logr.FromContextOrDiscard(ctx).Info("Created DataVolume", "datavolume", created.Name)
		case apierrors.IsAlreadyExists(err):
		case apierrors.IsForbidden(err) || apierrors.IsInvalid(err):
			// Refused (a clone the VM's ServiceAccount may not make): said on
			// the VM, tried again when the VM changes.
			c.recorder.Eventf(u, corev1.EventTypeWarning, ReasonCreateFailed, "Error creating DataVolume %s: %v", dv.Name, err)
		default:
			c.recorder.Eventf(u, corev1.EventTypeWarning, ReasonCreateFailed, "Error creating DataVolume %s: %v", dv.Name, err)
			errs = append(errs, fmt.Errorf("creating DataVolume %s/%s: %w", namespace, dv.Name, err))
		}
	}
	return errors.Join(errs...)
}

// render is the DataVolume of template for vm, as virt-controller makes it.
func render(vm *unstructured.Unstructured, template *kubevirt.DataVolumeTemplate) (*v1beta1.DataVolume, error) {
	dv := &v1beta1.DataVolume{ObjectMeta: metav1.ObjectMeta{
		Name:        template.Metadata.Name,
		Namespace:   vm.GetNamespace(),
		Labels:      maps.Clone(template.Metadata.Labels),
		Annotations: maps.Clone(template.Metadata.Annotations),
		OwnerReferences: []metav1.OwnerReference{{
			APIVersion: vm.GetAPIVersion(), Kind: "VirtualMachine", Name: vm.GetName(), UID: vm.GetUID(),
			Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true),
		}},
	}}
	if dv.Labels == nil {
		dv.Labels = map[string]string{}
	}
	dv.Labels[kubevirt.CreatedByLabel] = string(vm.GetUID())
	if len(template.Spec) == 0 {
		return nil, fmt.Errorf("dataVolumeTemplate %s has no spec", template.Metadata.Name)
	}
	if err := json.Unmarshal(template.Spec, &dv.Spec); err != nil {
		return nil, fmt.Errorf("reading dataVolumeTemplate %s: %w", template.Metadata.Name, err)
	}
	return dv, nil
}
