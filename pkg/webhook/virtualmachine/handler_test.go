package virtualmachine

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"gotest.tools/v3/assert"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/datavolume/datavolume/pkg/cloneauth"
	"github.com/datavolume/datavolume/pkg/webhook/internal/webhooktest"
)

const (
	defaultSA = "system:serviceaccount:vm-ns:default"
	clonerSA  = "system:serviceaccount:vm-ns:cloner"
	rbacAllow = `RBAC: allowed by RoleBinding "clone-to-vm-ns/source-namespace" of ClusterRole "datavolume-cloner" to ServiceAccount "default/vm-ns"`
)

func TestAdmitCrossNamespaceClone(t *testing.T) {
	sourceDisk := webhooktest.BoundClaim("source-namespace", "my-favorite-vm-disk", "2Gi")
	tests := []struct {
		name            string
		manifest        string
		allowed         map[string]string
		authorizerErr   error
		wantAllowed     bool
		wantCode        int32
		wantMessage     string
		wantAskedUser   string
		wantAnnotations map[string]string
	}{{
		name:          "the seed's VM may clone when its default service account may",
		manifest:      seedCloneVM,
		allowed:       map[string]string{defaultSA + " source-namespace/my-favorite-vm-disk": rbacAllow},
		wantAllowed:   true,
		wantAskedUser: defaultSA,
		wantAnnotations: map[string]string{
			"decision":       "allow",
			"reason":         rbacAllow,
			"source":         "source-namespace/my-favorite-vm-disk",
			"target":         "vm-ns/favorite-clone",
			"serviceaccount": "vm-ns/default",
		},
	}, {
		name:          "the seed's VM is refused when its service account may not clone",
		manifest:      seedCloneVM,
		wantCode:      http.StatusForbidden,
		wantAskedUser: defaultSA,
		wantMessage: `virtualmachines.kubevirt.io "vm-dv-clone" is forbidden: spec.dataVolumeTemplates[0].spec.source.pvc: Forbidden: ` +
			`service account vm-ns/default may not clone the PersistentVolumeClaim source-namespace/my-favorite-vm-disk into namespace vm-ns; ` +
			`it needs create datavolumes/source (cdi.kubevirt.io) in namespace source-namespace; ` +
			`ask an administrator for a RoleBinding in namespace source-namespace that grants it to the service account`,
		wantAnnotations: map[string]string{
			"decision":       "deny",
			"reason":         "missing permission create datavolumes/source (cdi.kubevirt.io) in namespace source-namespace",
			"source":         "source-namespace/my-favorite-vm-disk",
			"target":         "vm-ns/favorite-clone",
			"serviceaccount": "vm-ns/default",
		},
	}, {
		name:          "a serviceAccount volume names the account that is checked",
		manifest:      vmWithTemplates(cloneTemplate("disk", "", "source-namespace", "my-favorite-vm-disk"), saVolume),
		allowed:       map[string]string{clonerSA + " source-namespace/my-favorite-vm-disk": "RBAC: allowed"},
		wantAllowed:   true,
		wantAskedUser: clonerSA,
		wantAnnotations: map[string]string{
			"decision":       "allow",
			"reason":         "RBAC: allowed",
			"source":         "source-namespace/my-favorite-vm-disk",
			"target":         "vm-ns/disk",
			"serviceaccount": "vm-ns/cloner",
		},
	}, {
		name:          "the default account's permission does not cover a VM running as another",
		manifest:      vmWithTemplates(cloneTemplate("disk", "", "source-namespace", "my-favorite-vm-disk"), saVolume),
		allowed:       map[string]string{defaultSA + " source-namespace/my-favorite-vm-disk": rbacAllow},
		wantCode:      http.StatusForbidden,
		wantAskedUser: clonerSA,
		wantMessage: `virtualmachines.kubevirt.io "vm" is forbidden: spec.dataVolumeTemplates[0].spec.source.pvc: Forbidden: ` +
			`service account vm-ns/cloner may not clone the PersistentVolumeClaim source-namespace/my-favorite-vm-disk into namespace vm-ns; ` +
			`it needs create datavolumes/source (cdi.kubevirt.io) in namespace source-namespace; ` +
			`ask an administrator for a RoleBinding in namespace source-namespace that grants it to the service account`,
		wantAnnotations: map[string]string{
			"decision":       "deny",
			"reason":         "missing permission create datavolumes/source (cdi.kubevirt.io) in namespace source-namespace",
			"source":         "source-namespace/my-favorite-vm-disk",
			"target":         "vm-ns/disk",
			"serviceaccount": "vm-ns/cloner",
		},
	}, {
		name:          "an authorization error refuses the clone (fail closed)",
		manifest:      seedCloneVM,
		allowed:       map[string]string{defaultSA + " source-namespace/my-favorite-vm-disk": rbacAllow},
		authorizerErr: errAuthorizerDown,
		wantCode:      http.StatusForbidden,
		wantAskedUser: defaultSA,
		wantMessage: `virtualmachines.kubevirt.io "vm-dv-clone" is forbidden: spec.dataVolumeTemplates[0].spec.source.pvc: Forbidden: ` +
			`service account vm-ns/default may not clone the PersistentVolumeClaim source-namespace/my-favorite-vm-disk into namespace vm-ns ` +
			`(the authorization check failed: SubjectAccessReview: connection refused)`,
		wantAnnotations: map[string]string{
			"decision":       "deny",
			"reason":         "the authorization check failed: SubjectAccessReview: connection refused",
			"source":         "source-namespace/my-favorite-vm-disk",
			"target":         "vm-ns/favorite-clone",
			"serviceaccount": "vm-ns/default",
		},
	}, {
		name:        "a same-namespace clone needs no authorization",
		manifest:    vmWithTemplates(cloneTemplate("disk", "", "vm-ns", "local-disk"), ""),
		wantAllowed: true,
	}, {
		name:        "a clone without a source namespace is a same-namespace clone",
		manifest:    vmWithTemplates(cloneTemplate("disk", "vm-ns", "", "local-disk"), ""),
		wantAllowed: true,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			authorizer := &fakeAuthorizer{allowed: tt.allowed, err: tt.authorizerErr}
			handler := newHandler(t, authorizer.authorize, sourceDisk, webhooktest.BoundClaim("vm-ns", "local-disk", "1Gi"))
			resp := handler.Handle(context.Background(), vmRequest(t, admissionv1.Create, "v1alpha3", tt.manifest, ""))

			assert.Equal(t, resp.Allowed, tt.wantAllowed, "result: %+v", resp.Result)
			if !tt.wantAllowed {
				assert.Equal(t, resp.Result.Code, tt.wantCode)
				assert.Equal(t, resp.Result.Message, tt.wantMessage)
			}
			assert.DeepEqual(t, resp.AuditAnnotations, tt.wantAnnotations)
			for key := range resp.AuditAnnotations {
				assert.Assert(t, !strings.Contains(key, "/"), "audit annotation key %q", key)
			}
			if tt.wantAskedUser == "" {
				assert.Equal(t, len(authorizer.asked), 0, "asked: %+v", authorizer.asked)
				return
			}
			assert.Equal(t, len(authorizer.asked), 1)
			asked := authorizer.asked[0]
			assert.Equal(t, asked.User.GetName(), tt.wantAskedUser)
			assert.DeepEqual(t, asked.User.GetGroups(), []string{"system:serviceaccounts", "system:serviceaccounts:vm-ns", "system:authenticated"})
			assert.Equal(t, asked.TargetNamespace, "vm-ns")
		})
	}
}

func TestAdmitTemplateRules(t *testing.T) {
	allowAll := func(context.Context, cloneauth.Request) (cloneauth.Decision, error) {
		return cloneauth.Decision{Allowed: true, Checked: true, Reason: "test"}, nil
	}
	objects := []runtime.Object{webhooktest.BoundClaim("vm-ns", "big-disk", "5Gi")}
	tests := []struct {
		name         string
		manifest     string
		wantCauses   []string
		wantWarnings []string
	}{{
		name:     "a template in another namespace is refused",
		manifest: vmWithTemplates(cloneTemplate("disk", "elsewhere", "vm-ns", "big-disk")+"", ""),
		wantCauses: []string{
			`spec.dataVolumeTemplates[0].metadata.namespace: Invalid value: "elsewhere": must be empty or the VirtualMachine's namespace "vm-ns"`,
			`spec.dataVolumeTemplates[0].spec.pvc.resources.requests.storage: Invalid value: "2Gi": must be at least the size of the source PersistentVolumeClaim "vm-ns/big-disk" (5Gi)`,
		},
	}, {
		name: "a template without a name is refused",
		manifest: vmWithTemplates(`
  - metadata: {}
    spec:
      source: {blank: {}}
      pvc: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}
`, ""),
		wantCauses: []string{`spec.dataVolumeTemplates[0].metadata.name: Required value: the name of the DataVolume to create`},
	}, {
		name: "a template name that is not a DNS subdomain is refused",
		manifest: vmWithTemplates(`
  - metadata: {name: Disk_1}
    spec:
      source: {blank: {}}
      pvc: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}
`, ""),
		wantCauses: []string{`spec.dataVolumeTemplates[0].metadata.name: Invalid value: "Disk_1": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')`},
	}, {
		name: "static rules of each template are reported under its index",
		manifest: vmWithTemplates(`
  - metadata: {name: ok}
    spec:
      source: {blank: {}}
      pvc: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}
  - metadata: {name: bad}
    spec:
      contentType: archive
      source: {registry: {url: "docker://registry.example/disk"}}
      pvc: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}
      storage: {resources: {requests: {storage: 1Gi}}}
`, ""),
		wantCauses: []string{
			`spec.dataVolumeTemplates[1].spec.source.registry: Forbidden: contentType archive cannot be imported from registry (see the supported operations matrix)`,
			`spec.dataVolumeTemplates[1].spec.storage: Forbidden: exactly one of pvc or storage may be set, not both`,
		},
	}, {
		name: "a template spec that is not a DataVolume spec is refused at its spec",
		manifest: vmWithTemplates(`
  - metadata: {name: disk}
    spec: {pvc: 7}
`, ""),
		wantCauses: []string{`spec.dataVolumeTemplates[0].spec: Invalid value: cannot be read as a DataVolume spec: decoding the DataVolume: ` +
			`json: cannot unmarshal number into Go struct field DataVolumeSpec.spec.pvc of type v1.PersistentVolumeClaimSpec`},
	}, {
		name:       "a clone smaller than its source is refused under the template",
		manifest:   vmWithTemplates(cloneTemplate("disk", "", "vm-ns", "big-disk"), ""),
		wantCauses: []string{`spec.dataVolumeTemplates[0].spec.pvc.resources.requests.storage: Invalid value: "2Gi": must be at least the size of the source PersistentVolumeClaim "vm-ns/big-disk" (5Gi)`},
	}, {
		name:         "a missing source is allowed with a warning under the template",
		manifest:     vmWithTemplates(cloneTemplate("disk", "", "vm-ns", "not-yet"), ""),
		wantWarnings: []string{`spec.dataVolumeTemplates[0].spec.source.pvc: the source PersistentVolumeClaim "vm-ns/not-yet" does not exist yet; the clone waits until it does`},
	}, {
		name: "a VM without templates is allowed",
		manifest: `
apiVersion: kubevirt.io/v1
kind: VirtualMachine
metadata: {name: plain}
spec: {running: false, template: {spec: {domain: {devices: {}}}}}
`,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := newHandler(t, allowAll, objects...).Handle(context.Background(), vmRequest(t, admissionv1.Create, "v1", tt.manifest, ""))
			assert.Equal(t, resp.Allowed, len(tt.wantCauses) == 0, "result: %+v", resp.Result)
			assert.DeepEqual(t, causes(resp), tt.wantCauses)
			assert.DeepEqual(t, resp.Warnings, tt.wantWarnings)
			if len(tt.wantCauses) > 0 {
				assert.Equal(t, resp.Result.Code, int32(http.StatusUnprocessableEntity))
			}
		})
	}
}

// Issue 18: a clone check refused because the service account has the most
// checks in flight allowed is a 429 with Retry-After, to be retried, not a
// 403; it tells nothing of the source, and the templates after it are not
// checked.
func TestAdmitTooManyChecksIs429(t *testing.T) {
	tooMany := fmt.Errorf("%w: user %q has 8 in flight already, the most allowed per requester; retry in 1 s", cloneauth.ErrTooManyChecks, defaultSA)
	authorizer := &fakeAuthorizer{err: tooMany}
	manifest := vmWithTemplates(cloneTemplate("from-a", "", "src-a", "disk")+cloneTemplate("from-b", "", "src-b", "disk"), "")
	resp := newHandler(t, authorizer.authorize).Handle(context.Background(), vmRequest(t, admissionv1.Create, "v1", manifest, ""))

	assert.Assert(t, !resp.Allowed)
	assert.Equal(t, resp.Result.Code, int32(http.StatusTooManyRequests))
	assert.Equal(t, resp.Result.Reason, metav1.StatusReasonTooManyRequests)
	assert.Assert(t, resp.Result.Details != nil)
	assert.Equal(t, resp.Result.Details.RetryAfterSeconds, int32(cloneauth.RetryAfterSeconds))
	assert.Equal(t, resp.Result.Message, tooMany.Error())
	assert.Equal(t, len(authorizer.asked), 1, "the second template was checked")
	assert.DeepEqual(t, resp.AuditAnnotations, map[string]string{
		"decision": "deny", "reason": tooMany.Error(), "source": "src-a/disk", "target": "vm-ns/from-a", "serviceaccount": "vm-ns/default",
	})
	assert.Equal(t, len(resp.Warnings), 0, "a refused VM learns nothing of its sources: %q", resp.Warnings)
}

func TestAdmitSeveralClonesAnnotatesEach(t *testing.T) {
	authorizer := &fakeAuthorizer{allowed: map[string]string{defaultSA + " src-a/disk": "RBAC: a"}}
	manifest := vmWithTemplates(
		cloneTemplate("local", "", "vm-ns", "local-disk")+
			cloneTemplate("from-a", "", "src-a", "disk")+
			cloneTemplate("from-b", "", "src-b", "disk"), "")
	resp := newHandler(t, authorizer.authorize).Handle(context.Background(), vmRequest(t, admissionv1.Create, "v1", manifest, ""))

	assert.Assert(t, !resp.Allowed)
	assert.Equal(t, resp.Result.Code, int32(http.StatusForbidden))
	assert.DeepEqual(t, resp.AuditAnnotations, map[string]string{
		"decision.1": "allow", "reason.1": "RBAC: a", "source.1": "src-a/disk", "target.1": "vm-ns/from-a", "serviceaccount.1": "vm-ns/default",
		"decision.2": "deny", "reason.2": "missing permission create datavolumes/source (cdi.kubevirt.io) in namespace src-b",
		"source.2": "src-b/disk", "target.2": "vm-ns/from-b", "serviceaccount.2": "vm-ns/default",
	})
	// Every template's source is missing: the templates whose clone may go
	// ahead are warned of it; the refused one learns nothing of its source.
	assert.DeepEqual(t, resp.Warnings, []string{
		`spec.dataVolumeTemplates[0].spec.source.pvc: the source PersistentVolumeClaim "vm-ns/local-disk" does not exist yet; the clone waits until it does`,
		`spec.dataVolumeTemplates[1].spec.source.pvc: the source PersistentVolumeClaim "src-a/disk" does not exist yet; the clone waits until it does`,
	})
}

func TestAdmitUpdateChecksOnlyNewOrChangedTemplates(t *testing.T) {
	authorizer := &fakeAuthorizer{}
	// The source has grown past the template since the VM was created.
	handler := newHandler(t, authorizer.authorize, webhooktest.BoundClaim("source-namespace", "my-favorite-vm-disk", "9Gi"))

	t.Run("starting the VM does not re-check its templates", func(t *testing.T) {
		started := strings.Replace(seedCloneVM, "running: false", "running: true", 1)
		resp := handler.Handle(context.Background(), vmRequest(t, admissionv1.Update, "v1alpha3", started, seedCloneVM))
		assert.Assert(t, resp.Allowed, "result: %+v", resp.Result)
		assert.Equal(t, len(authorizer.asked), 0)
		assert.Assert(t, resp.AuditAnnotations == nil)
	})
	t.Run("a changed template is checked again", func(t *testing.T) {
		resized := strings.Replace(seedCloneVM, "storage: 2Gi", "storage: 3Gi", 1)
		resp := handler.Handle(context.Background(), vmRequest(t, admissionv1.Update, "v1alpha3", resized, seedCloneVM))
		assert.Assert(t, !resp.Allowed)
		assert.Equal(t, len(authorizer.asked), 1)
		// Refused: the source's size (9Gi) is not told.
		assert.Equal(t, resp.Result.Code, int32(http.StatusForbidden))
		assert.Equal(t, resp.Result.Message, `virtualmachines.kubevirt.io "vm-dv-clone" is forbidden: `+
			`spec.dataVolumeTemplates[0].spec.source.pvc: Forbidden: service account vm-ns/default may not clone the PersistentVolumeClaim source-namespace/my-favorite-vm-disk into namespace vm-ns; `+
			`it needs create datavolumes/source (cdi.kubevirt.io) in namespace source-namespace; ask an administrator for a RoleBinding in namespace source-namespace that grants it to the service account`)
		assert.Equal(t, len(resp.Warnings), 0, "warnings: %q", resp.Warnings)
	})
	t.Run("a changed template whose clone is allowed is checked against its source", func(t *testing.T) {
		allowing := &fakeAuthorizer{allowed: map[string]string{defaultSA + " source-namespace/my-favorite-vm-disk": rbacAllow}}
		handler := newHandler(t, allowing.authorize, webhooktest.BoundClaim("source-namespace", "my-favorite-vm-disk", "9Gi"))
		resized := strings.Replace(seedCloneVM, "storage: 2Gi", "storage: 3Gi", 1)
		resp := handler.Handle(context.Background(), vmRequest(t, admissionv1.Update, "v1alpha3", resized, seedCloneVM))
		assert.DeepEqual(t, causes(resp), []string{
			`spec.dataVolumeTemplates[0].spec.pvc.resources.requests.storage: Invalid value: "3Gi": must be at least the size of the source PersistentVolumeClaim "source-namespace/my-favorite-vm-disk" (9Gi)`,
		})
	})
	t.Run("delete is allowed", func(t *testing.T) {
		assert.Assert(t, handler.Handle(context.Background(), vmRequest(t, admissionv1.Delete, "v1", seedCloneVM, "")).Allowed)
	})
}

func TestSeedVirtualMachinesDecode(t *testing.T) {
	decoder := newHandler(t, nil).Admitter.Decoder
	for name, manifest := range map[string]string{"vm-dv-clone": seedCloneVM, "example-vm": seedImportVM} {
		t.Run(name, func(t *testing.T) {
			vm, err := decodeVirtualMachine(webhooktest.JSON(t, manifest))
			assert.NilError(t, err)
			assert.Equal(t, vm.Name(), name)
			assert.Equal(t, vm.ServiceAccountName(), "default")
			assert.Equal(t, len(vm.Spec.DataVolumeTemplates), 1)
			spec, err := decoder.Spec(vm.Spec.DataVolumeTemplates[0].Spec)
			assert.NilError(t, err)
			assert.Equal(t, string(spec.ContentType), "kubevirt", "defaulted as a v1beta1 DataVolume")
			assert.Assert(t, spec.PVC != nil && spec.Source != nil)
		})
	}
}

// The seed's example-dv-vm.yaml leaves its http url empty, a placeholder
// for the image to import: the static rules refuse it until it is filled.
func TestSeedImportVMNeedsItsURL(t *testing.T) {
	handler := newHandler(t, nil)
	resp := handler.Handle(context.Background(), vmRequest(t, admissionv1.Create, "v1alpha3", seedImportVM, ""))
	assert.DeepEqual(t, causes(resp), []string{`spec.dataVolumeTemplates[0].spec.source.http.url: Invalid value: "": must be a http or https URL`})

	filled := strings.Replace(seedImportVM, `url: ""`, `url: "http://images.example/fedora.qcow2"`, 1)
	resp = handler.Handle(context.Background(), vmRequest(t, admissionv1.Create, "v1alpha3", filled, ""))
	assert.Assert(t, resp.Allowed, "result: %+v", resp.Result)
}

func TestHandlerRefusesWhatItCannotRead(t *testing.T) {
	handler := newHandler(t, nil)
	tests := []struct {
		name   string
		modify func(*admissionv1.AdmissionRequest)
	}{
		{"another resource", func(r *admissionv1.AdmissionRequest) { r.Resource.Resource = "virtualmachineinstances" }},
		{"another group", func(r *admissionv1.AdmissionRequest) { r.Resource.Group = "cdi.kubevirt.io" }},
		{"no object", func(r *admissionv1.AdmissionRequest) { r.Object.Raw = nil }},
		{"not JSON", func(r *admissionv1.AdmissionRequest) { r.Object.Raw = []byte("[") }},
		{"templates not a list", func(r *admissionv1.AdmissionRequest) { r.Object.Raw = []byte(`{"spec":{"dataVolumeTemplates":{}}}`) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := vmRequest(t, admissionv1.Create, "v1", seedCloneVM, "")
			tt.modify(&req.AdmissionRequest)
			resp := handler.Handle(context.Background(), req)
			assert.Assert(t, !resp.Allowed)
			assert.Equal(t, resp.Result.Code, int32(http.StatusBadRequest))
		})
	}
}

// archiveCloneTemplate clones source-namespace/secret-disk as an archive
// into a 1Gi Filesystem claim: against a 5Gi Block source in use by a pod it
// breaks every rule that reads the source (size, volume mode, pods).
const archiveCloneTemplate = `
  - metadata: {name: disk}
    spec:
      contentType: archive
      source: {pvc: {namespace: source-namespace, name: secret-disk}}
      pvc: {accessModes: [ReadWriteOnce], volumeMode: Filesystem, resources: {requests: {storage: 1Gi}}}
`

// sourceStates are the states of source-namespace/secret-disk a requester
// without permission must not be able to tell apart.
func sourceStates() map[string][]runtime.Object {
	return map[string][]runtime.Object{
		"absent":           nil,
		"filesystem 5Gi":   {webhooktest.BoundClaim("source-namespace", "secret-disk", "5Gi")},
		"pending request":  {webhooktest.BoundClaim("source-namespace", "secret-disk", "7Gi", webhooktest.Unbound)},
		"block 5Gi in use": {webhooktest.BoundClaim("source-namespace", "secret-disk", "5Gi", webhooktest.BlockMode), webhooktest.PodUsing("source-namespace", "virt-launcher-secret-vm", "secret-disk", corev1.PodRunning)},
	}
}

// A refused clone tells the requester that it is refused and which
// permission to ask for, nothing about the source claim: whatever the claim's
// state, or whether it exists, the answer is the same, and neither its
// message nor its warnings mention a size, a volume mode or a pod.
func TestDeniedCloneLearnsNothingAboutTheSource(t *testing.T) {
	manifest := vmWithTemplates(archiveCloneTemplate, "")
	const wantMessage = `virtualmachines.kubevirt.io "vm" is forbidden: spec.dataVolumeTemplates[0].spec.source.pvc: Forbidden: ` +
		`service account vm-ns/default may not clone the PersistentVolumeClaim source-namespace/secret-disk into namespace vm-ns; ` +
		`it needs create datavolumes/source (cdi.kubevirt.io) in namespace source-namespace; ` +
		`ask an administrator for a RoleBinding in namespace source-namespace that grants it to the service account`
	for state, objects := range sourceStates() {
		t.Run(state, func(t *testing.T) {
			authorizer := &fakeAuthorizer{}
			resp := newHandler(t, authorizer.authorize, objects...).Handle(context.Background(), vmRequest(t, admissionv1.Create, "v1", manifest, ""))

			assert.Assert(t, !resp.Allowed)
			assert.Equal(t, resp.Result.Code, int32(http.StatusForbidden))
			assert.Equal(t, resp.Result.Message, wantMessage)
			assert.Assert(t, resp.Result.Details == nil || len(resp.Result.Details.Causes) == 0, "details: %+v", resp.Result.Details)
			assert.Equal(t, len(resp.Warnings), 0, "warnings: %q", resp.Warnings)
			for _, text := range append([]string{resp.Result.Message, string(resp.Result.Reason)}, causes(resp)...) {
				for _, secret := range []string{"Gi", "Block", "Filesystem", "volume mode", "in use", "pod ", "virt-launcher", "exist"} {
					assert.Assert(t, !strings.Contains(text, secret), "%q leaks %q about the source", text, secret)
				}
			}
			assert.Equal(t, len(authorizer.asked), 1)
		})
	}
}

// An allowed clone is checked against its source as before.
func TestAllowedCloneIsCheckedAgainstItsSource(t *testing.T) {
	manifest := vmWithTemplates(archiveCloneTemplate, "")
	allowed := map[string]string{defaultSA + " source-namespace/secret-disk": rbacAllow}
	tests := []struct {
		state        string
		wantCauses   []string
		wantWarnings []string
	}{{
		state:        "absent",
		wantWarnings: []string{`spec.dataVolumeTemplates[0].spec.source.pvc: the source PersistentVolumeClaim "source-namespace/secret-disk" does not exist yet; the clone waits until it does`},
	}, {
		state:      "filesystem 5Gi",
		wantCauses: []string{`spec.dataVolumeTemplates[0].spec.pvc.resources.requests.storage: Invalid value: "1Gi": must be at least the size of the source PersistentVolumeClaim "source-namespace/secret-disk" (5Gi)`},
	}, {
		state: "block 5Gi in use",
		wantCauses: []string{
			`spec.dataVolumeTemplates[0].spec.pvc.volumeMode: Invalid value: "Filesystem": contentType archive cannot be cloned across volume modes: the source PersistentVolumeClaim "source-namespace/secret-disk" is Block`,
			`spec.dataVolumeTemplates[0].spec.pvc.resources.requests.storage: Invalid value: "1Gi": must be at least 5418Mi: the source PersistentVolumeClaim "source-namespace/secret-disk" is a Block volume of 5Gi, and a Filesystem volume loses 5.5% of its size to filesystem overhead`,
		},
		wantWarnings: []string{`spec.dataVolumeTemplates[0].spec.source.pvc: the source PersistentVolumeClaim "source-namespace/secret-disk" is in use by pod virt-launcher-secret-vm; the clone waits until it is released (power off the VM using it)`},
	}}
	for _, tt := range tests {
		t.Run(tt.state, func(t *testing.T) {
			authorizer := &fakeAuthorizer{allowed: allowed}
			resp := newHandler(t, authorizer.authorize, sourceStates()[tt.state]...).Handle(context.Background(), vmRequest(t, admissionv1.Create, "v1", manifest, ""))
			assert.Equal(t, resp.Allowed, len(tt.wantCauses) == 0, "result: %+v", resp.Result)
			assert.DeepEqual(t, causes(resp), tt.wantCauses)
			assert.DeepEqual(t, resp.Warnings, tt.wantWarnings)
			assert.Equal(t, len(authorizer.asked), 1)
		})
	}
}
