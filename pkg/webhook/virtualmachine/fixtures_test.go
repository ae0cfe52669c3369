package virtualmachine

import (
	"context"
	"errors"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/datavolume/datavolume/pkg/cloneauth"
	"github.com/datavolume/datavolume/pkg/plan"
	"github.com/datavolume/datavolume/pkg/webhook/admission"
	"github.com/datavolume/datavolume/pkg/webhook/datavolume"
	"github.com/datavolume/datavolume/pkg/webhook/internal/webhooktest"
)

// fakeAuthorizer answers clone authorizations from a table keyed by
// "user source-namespace/source-name" and records what it was asked.
type fakeAuthorizer struct {
	allowed map[string]string // key → reason
	err     error
	asked   []cloneauth.Request
}

func (f *fakeAuthorizer) authorize(_ context.Context, req cloneauth.Request) (cloneauth.Decision, error) {
	f.asked = append(f.asked, req)
	if f.err != nil {
		return cloneauth.Decision{}, f.err
	}
	if reason, ok := f.allowed[req.User.GetName()+" "+req.SourceNamespace+"/"+req.SourceName]; ok {
		return cloneauth.Decision{Allowed: true, Checked: true, Via: "datavolumes/source", Reason: reason}, nil
	}
	return cloneauth.Decision{Checked: true,
		Missing: "create datavolumes/source (cdi.kubevirt.io) in namespace " + req.SourceNamespace}, nil
}

var errAuthorizerDown = errors.New("SubjectAccessReview: connection refused")

// newHandler is a VM Handler over listers holding objects.
func newHandler(t testing.TB, authorize CloneAuthorizeFunc, objects ...runtime.Object) *Handler {
	t.Helper()
	claims, pods := webhooktest.Listers(t, objects...)
	return &Handler{Admitter: &Admitter{
		Rules: &datavolume.Rules{
			Lookups:            datavolume.Lookups{Claims: claims, Pods: pods},
			FilesystemOverhead: plan.DefaultFilesystemOverhead,
		},
		Decoder:        datavolume.NewDecoder(),
		AuthorizeClone: authorize,
	}}
}

// vmRequest is an admission request for the VM manifest (YAML) in
// namespace vm-ns; old is the previous VM for an update.
func vmRequest(t testing.TB, operation admissionv1.Operation, version, manifest, old string) admission.Request {
	t.Helper()
	req := admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		UID:       "uid-vm",
		Kind:      metav1.GroupVersionKind{Group: "kubevirt.io", Version: version, Kind: "VirtualMachine"},
		Resource:  metav1.GroupVersionResource{Group: "kubevirt.io", Version: version, Resource: "virtualmachines"},
		Namespace: "vm-ns",
		Operation: operation,
		Object:    runtime.RawExtension{Raw: webhooktest.JSON(t, manifest)},
	}}
	if old != "" {
		req.OldObject = runtime.RawExtension{Raw: webhooktest.JSON(t, old)}
	}
	return req
}

// causes are a refusal's "field: message".
func causes(resp admission.Response) []string {
	if resp.Result == nil || resp.Result.Details == nil {
		return nil
	}
	var out []string
	for _, cause := range resp.Result.Details.Causes {
		out = append(out, cause.Field+": "+cause.Message)
	}
	return out
}

// seedCloneVM is the seed's 6.10.3.3 VirtualMachine, verbatim.
const seedCloneVM = `
apiVersion: kubevirt.io/v1alpha3
kind: VirtualMachine
metadata:
  labels:
    kubevirt.io/vm: vm-dv-clone
  name: vm-dv-clone
spec:
  running: false
  template:
    metadata:
      labels:
        kubevirt.io/vm: vm-dv-clone
    spec:
      domain:
        devices:
          disks:
          - disk:
              bus: virtio
            name: root-disk
        resources:
          requests:
            memory: 64M
      volumes:
      - dataVolume:
          name: favorite-clone
        name: root-disk
  dataVolumeTemplates:
  - metadata:
      name: favorite-clone
    spec:
      pvc:
        accessModes:
        - ReadWriteOnce
        resources:
          requests:
            storage: 2Gi
      source:
        pvc:
          namespace: "source-namespace"
          name: "my-favorite-vm-disk"
`

// seedImportVM is the seed's 6.10.3.4 example-dv-vm.yaml, verbatim: its
// http url is a placeholder ("").
const seedImportVM = `
apiVersion: kubevirt.io/v1alpha3
kind: VirtualMachine
metadata:
  labels:
    kubevirt.io/vm: example-vm
  name: example-vm
spec:
  dataVolumeTemplates:
  - metadata:
      name: example-dv
    spec:
      pvc:
        accessModes:
        - ReadWriteOnce
        resources:
          requests:
            storage: 1G
      source:
          http:
             url: ""
  running: false
  template:
    metadata:
      labels:
        kubevirt.io/vm: example-vm
    spec:
      domain:
        cpu:
          cores: 1
        devices:
          disks:
          - disk:
              bus: virtio
            name: example-dv-disk
        machine:
          type: q35
        resources:
          requests:
            memory: 1G
      terminationGracePeriodSeconds: 0
      volumes:
      - dataVolume:
          name: example-dv
        name: example-dv-disk
`

// vmWithTemplates is a kubevirt.io/v1 VM with the given templates (YAML list
// items indented for spec.dataVolumeTemplates) and extra pod volumes.
func vmWithTemplates(templates string, volumes string) string {
	return `
apiVersion: kubevirt.io/v1
kind: VirtualMachine
metadata: {name: vm, namespace: vm-ns}
spec:
  runStrategy: Halted
  template:
    spec:
      domain: {devices: {}}
      volumes:
      - {name: root, dataVolume: {name: root}}
` + volumes + `
  dataVolumeTemplates:
` + templates
}

const saVolume = "      - {name: sa, serviceAccount: {serviceAccountName: cloner}}\n"

// cloneTemplate is a template cloning namespace/name into a 2Gi pvc.
func cloneTemplate(name, namespace, sourceNamespace, sourceName string) string {
	meta := "name: " + name
	if namespace != "" {
		meta += ", namespace: " + namespace
	}
	return `
  - metadata: {` + meta + `}
    spec:
      source: {pvc: {namespace: "` + sourceNamespace + `", name: ` + sourceName + `}}
      pvc: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 2Gi}}}
`
}
