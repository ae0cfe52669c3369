package datavolume

import (
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"gotest.tools/v3/assert"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

func TestValidateClone(t *testing.T) {
	tests := []struct {
		name     string
		objects  []runtime.Object
		manifest string
		// wantCauses are the refusal's "field: message"; none means allowed.
		wantCauses   []string
		wantWarnings []string
	}{{
		name:     "a clone smaller than its source is refused, naming both sizes",
		objects:  []runtime.Object{boundClaim("src", "disk", "2Gi")},
		manifest: cloneDV("disk", "1Gi", ""),
		wantCauses: []string{`spec.pvc.resources.requests.storage: Invalid value: "1Gi": ` +
			`must be at least the size of the source PersistentVolumeClaim "src/disk" (2Gi)`},
	}, {
		name:     "a clone as large as its source is allowed",
		objects:  []runtime.Object{boundClaim("src", "disk", "2Gi")},
		manifest: cloneDV("disk", "2Gi", ""),
	}, {
		name:     "a clone larger than its source is allowed",
		objects:  []runtime.Object{boundClaim("src", "disk", "2Gi")},
		manifest: cloneDV("disk", "3Gi", ""),
	}, {
		name:     "sizes compare as quantities, not strings",
		objects:  []runtime.Object{boundClaim("src", "disk", "1G")},
		manifest: cloneDV("disk", "1Gi", ""),
	}, {
		name:     "a bound source counts its capacity, not its request",
		objects:  []runtime.Object{boundClaim("src", "disk", "5Gi", requesting("2Gi"))},
		manifest: cloneDV("disk", "3Gi", ""),
		wantCauses: []string{`spec.pvc.resources.requests.storage: Invalid value: "3Gi": ` +
			`must be at least the size of the source PersistentVolumeClaim "src/disk" (5Gi)`},
	}, {
		name:     "an unbound source counts its request",
		objects:  []runtime.Object{boundClaim("src", "disk", "5Gi", requesting("3Gi"), unbound)},
		manifest: cloneDV("disk", "2Gi", ""),
		wantCauses: []string{`spec.pvc.resources.requests.storage: Invalid value: "2Gi": ` +
			`must be at least the size of the source PersistentVolumeClaim "src/disk" (3Gi)`},
	}, {
		name:     "block to block of the same size is allowed",
		objects:  []runtime.Object{boundClaim("src", "disk", "2Gi", blockMode)},
		manifest: cloneDV("disk", "2Gi", "Block"),
	}, {
		name:     "block to block smaller is refused",
		objects:  []runtime.Object{boundClaim("src", "disk", "2Gi", blockMode)},
		manifest: cloneDV("disk", "1Gi", "Block"),
		wantCauses: []string{`spec.pvc.resources.requests.storage: Invalid value: "1Gi": ` +
			`must be at least the size of the source PersistentVolumeClaim "src/disk" (2Gi)`},
	}, {
		name:     "filesystem to block of the same size is allowed",
		objects:  []runtime.Object{boundClaim("src", "disk", "2Gi")},
		manifest: cloneDV("disk", "2Gi", "Block"),
	}, {
		name:     "block to filesystem of the same size is refused: the filesystem takes its overhead",
		objects:  []runtime.Object{boundClaim("src", "disk", "2Gi", blockMode)},
		manifest: cloneDV("disk", "2Gi", "Filesystem"),
		wantCauses: []string{`spec.pvc.resources.requests.storage: Invalid value: "2Gi": must be at least 2168Mi: ` +
			`the source PersistentVolumeClaim "src/disk" is a Block volume of 2Gi, and a Filesystem volume loses 5.5% of its size to filesystem overhead`},
	}, {
		name:     "block to filesystem just under the overhead is refused",
		objects:  []runtime.Object{boundClaim("src", "disk", "2Gi", blockMode)},
		manifest: cloneDV("disk", "2167Mi", ""),
		wantCauses: []string{`spec.pvc.resources.requests.storage: Invalid value: "2167Mi": must be at least 2168Mi: ` +
			`the source PersistentVolumeClaim "src/disk" is a Block volume of 2Gi, and a Filesystem volume loses 5.5% of its size to filesystem overhead`},
	}, {
		name:     "block to filesystem with room for the overhead is allowed",
		objects:  []runtime.Object{boundClaim("src", "disk", "2Gi", blockMode)},
		manifest: cloneDV("disk", "2168Mi", ""),
	}, {
		name:     "kubevirt content may go from block to filesystem",
		objects:  []runtime.Object{boundClaim("src", "disk", "1Gi", blockMode)},
		manifest: cloneDV("disk", "2Gi", "Filesystem", "contentType: kubevirt"),
	}, {
		name:     "archive content may not go from block to filesystem",
		objects:  []runtime.Object{boundClaim("src", "disk", "1Gi", blockMode)},
		manifest: cloneDV("disk", "2Gi", "Filesystem", "contentType: archive"),
		wantCauses: []string{`spec.pvc.volumeMode: Invalid value: "Filesystem": ` +
			`contentType archive cannot be cloned across volume modes: the source PersistentVolumeClaim "src/disk" is Block`},
	}, {
		name:     "archive content into Block is refused once, by the static rule",
		objects:  []runtime.Object{boundClaim("src", "disk", "1Gi")},
		manifest: cloneDV("disk", "2Gi", "Block", "contentType: archive"),
		wantCauses: []string{`spec.pvc.volumeMode: Forbidden: ` +
			`contentType archive needs a Filesystem volume to extract into; Block is not supported`},
	}, {
		name:     "archive content filesystem to filesystem is allowed",
		objects:  []runtime.Object{boundClaim("src", "disk", "1Gi")},
		manifest: cloneDV("disk", "1Gi", "", "contentType: archive"),
	}, {
		name:         "a missing source is allowed with a warning: the controller waits for it",
		manifest:     cloneDV("disk", "1Gi", ""),
		wantWarnings: []string{`spec.source.pvc: the source PersistentVolumeClaim "src/disk" does not exist yet; the clone waits until it does`},
	}, {
		name: "a source in use by a running pod is allowed with a warning",
		objects: []runtime.Object{
			boundClaim("src", "disk", "1Gi"),
			podUsing("src", "virt-launcher-vm1", "disk", corev1.PodRunning),
			podUsing("src", "old-job", "disk", corev1.PodSucceeded),
			podUsing("src", "crashed", "disk", corev1.PodFailed),
			podUsing("other", "elsewhere", "disk", corev1.PodRunning),
			podUsing("src", "unrelated", "another-disk", corev1.PodRunning),
		},
		manifest: cloneDV("disk", "1Gi", ""),
		wantWarnings: []string{`spec.source.pvc: the source PersistentVolumeClaim "src/disk" is in use by pod virt-launcher-vm1; ` +
			`the clone waits until it is released (power off the VM using it)`},
	}, {
		name: "a source in use and too large gets both the warning and the refusal",
		objects: []runtime.Object{
			boundClaim("src", "disk", "2Gi"),
			podUsing("src", "virt-launcher-vm1", "disk", corev1.PodPending),
		},
		manifest: cloneDV("disk", "1Gi", ""),
		wantCauses: []string{`spec.pvc.resources.requests.storage: Invalid value: "1Gi": ` +
			`must be at least the size of the source PersistentVolumeClaim "src/disk" (2Gi)`},
		wantWarnings: []string{`spec.source.pvc: the source PersistentVolumeClaim "src/disk" is in use by pod virt-launcher-vm1; ` +
			`the clone waits until it is released (power off the VM using it)`},
	}, {
		name:    "a source without a namespace is looked up in the DataVolume's",
		objects: []runtime.Object{boundClaim("target", "disk", "2Gi")},
		manifest: `
apiVersion: cdi.kubevirt.io/v1beta1
kind: DataVolume
metadata: {name: clone}
spec:
  source: {pvc: {name: disk}}
  pvc:
    accessModes: [ReadWriteOnce]
    resources: {requests: {storage: 1Gi}}
`,
		wantCauses: []string{`spec.pvc.resources.requests.storage: Invalid value: "1Gi": ` +
			`must be at least the size of the source PersistentVolumeClaim "target/disk" (2Gi)`},
	}, {
		name:    "static and lookup errors are reported together",
		objects: []runtime.Object{boundClaim("src", "disk", "2Gi")},
		manifest: `
apiVersion: cdi.kubevirt.io/v1beta1
kind: DataVolume
metadata: {name: clone}
spec:
  source: {pvc: {namespace: src, name: disk}}
  pvc:
    resources: {requests: {storage: 1Gi}}
`,
		wantCauses: []string{
			`spec.pvc.accessModes: Required value: at least one access mode`,
			`spec.pvc.resources.requests.storage: Invalid value: "1Gi": must be at least the size of the source PersistentVolumeClaim "src/disk" (2Gi)`,
		},
	}, {
		name:    "a storage clone without a size is allowed: the mutation fills it",
		objects: []runtime.Object{boundClaim("src", "disk", "2Gi")},
		manifest: `
apiVersion: cdi.kubevirt.io/v1beta1
kind: DataVolume
metadata: {name: clone}
spec:
  source: {pvc: {namespace: src, name: disk}}
  storage: {}
`,
	}, {
		name:    "a storage clone smaller than its source is refused at spec.storage",
		objects: []runtime.Object{boundClaim("src", "disk", "2Gi")},
		manifest: `
apiVersion: cdi.kubevirt.io/v1beta1
kind: DataVolume
metadata: {name: clone}
spec:
  source: {pvc: {namespace: src, name: disk}}
  storage: {resources: {requests: {storage: 1Gi}}}
`,
		wantCauses: []string{`spec.storage.resources.requests.storage: Invalid value: "1Gi": ` +
			`must be at least the size of the source PersistentVolumeClaim "src/disk" (2Gi)`},
	}, {
		name:    "the seed's v1alpha1 example-clone-dv.yaml decodes and passes against a 1G source",
		objects: []runtime.Object{boundClaim("example-ns", "source-pvc", "1G")},
		manifest: `
apiVersion: cdi.kubevirt.io/v1alpha1
kind: DataVolume
metadata:
  name: "example-clone-dv"
spec:
  source:
      pvc:
        name: source-pvc
        namespace: example-ns
  pvc:
    accessModes:
      - ReadWriteOnce
    resources:
      requests:
        storage: "1G"
`,
	}, {
		name:    "a v1alpha1 clone smaller than its source is refused",
		objects: []runtime.Object{boundClaim("example-ns", "source-pvc", "2Gi")},
		manifest: `
apiVersion: cdi.kubevirt.io/v1alpha1
kind: DataVolume
metadata: {name: "example-clone-dv"}
spec:
  source: {pvc: {name: source-pvc, namespace: example-ns}}
  pvc:
    accessModes: [ReadWriteOnce]
    resources: {requests: {storage: "1G"}}
`,
		wantCauses: []string{`spec.pvc.resources.requests.storage: Invalid value: "1G": ` +
			`must be at least the size of the source PersistentVolumeClaim "example-ns/source-pvc" (2Gi)`},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := validate(t, newRules(t, tt.objects...), dataVolumeRequest(t, admissionv1.Create, tt.manifest, ""))
			assert.Equal(t, resp.Allowed, len(tt.wantCauses) == 0, "result: %+v", resp.Result)
			assert.DeepEqual(t, causes(resp), tt.wantCauses)
			assert.DeepEqual(t, resp.Warnings, tt.wantWarnings)
			if len(tt.wantCauses) > 0 {
				assert.Equal(t, resp.Result.Code, int32(http.StatusUnprocessableEntity))
			}
		})
	}
}

func TestValidateMessageNamesFieldAndSizes(t *testing.T) {
	resp := validate(t, newRules(t, boundClaim("src", "disk", "2Gi")), dataVolumeRequest(t, admissionv1.Create, cloneDV("disk", "1Gi", ""), ""))
	assert.Equal(t, resp.Result.Message, `DataVolume.cdi.kubevirt.io "clone" is invalid: spec.pvc.resources.requests.storage: `+
		`Invalid value: "1Gi": must be at least the size of the source PersistentVolumeClaim "src/disk" (2Gi)`)
}

// Every cell of the supported-operations matrix that can be decided before
// a byte is read, through the webhook.
func TestValidateContentTypeMatrix(t *testing.T) {
	sources := map[string]string{
		"http":            `http: {url: "http://images.example/disk.img"}`,
		"https":           `http: {url: "https://images.example/disk.img"}`,
		"http-basic-auth": `http: {url: "http://images.example/disk.img", secretRef: creds}`,
		"registry":        `registry: {url: "docker://registry.example/disk:latest"}`,
		"upload":          `upload: {}`,
		"blank":           `blank: {}`,
		"pvc":             `pvc: {namespace: src, name: disk}`,
	}
	tests := []struct {
		contentType, source, volumeMode string
		wantCauses                      []string
	}{
		{"kubevirt", "http", "Filesystem", nil},
		{"kubevirt", "https", "Filesystem", nil},
		{"kubevirt", "http-basic-auth", "Filesystem", nil},
		{"kubevirt", "registry", "Filesystem", nil},
		{"kubevirt", "upload", "Filesystem", nil},
		{"kubevirt", "blank", "Filesystem", nil},
		{"kubevirt", "pvc", "Filesystem", nil},
		{"kubevirt", "http", "Block", nil},
		{"kubevirt", "https", "Block", nil},
		{"kubevirt", "http-basic-auth", "Block", nil},
		{"kubevirt", "registry", "Block", nil},
		{"kubevirt", "upload", "Block", nil},
		{"kubevirt", "blank", "Block", nil},
		{"kubevirt", "pvc", "Block", nil},
		{"archive", "http", "Filesystem", nil},
		{"archive", "https", "Filesystem", nil},
		{"archive", "http-basic-auth", "Filesystem", nil},
		{"archive", "pvc", "Filesystem", nil},
		{"archive", "registry", "Filesystem", []string{
			`spec.source.registry: Forbidden: contentType archive cannot be imported from registry (see the supported operations matrix)`}},
		{"archive", "upload", "Filesystem", []string{
			`spec.source.upload: Forbidden: contentType archive cannot be imported from upload (see the supported operations matrix)`}},
		{"archive", "blank", "Filesystem", []string{
			`spec.source.blank: Forbidden: a blank image is a disk image: contentType archive is not supported`}},
		{"archive", "http", "Block", []string{
			`spec.pvc.volumeMode: Forbidden: contentType archive needs a Filesystem volume to extract into; Block is not supported`}},
	}
	for _, tt := range tests {
		t.Run(tt.contentType+"/"+tt.source+"/"+tt.volumeMode, func(t *testing.T) {
			manifest := `
apiVersion: cdi.kubevirt.io/v1beta1
kind: DataVolume
metadata: {name: dv}
spec:
  contentType: ` + tt.contentType + `
  source: {` + sources[tt.source] + `}
  pvc:
    accessModes: [ReadWriteOnce]
    volumeMode: ` + tt.volumeMode + `
    resources: {requests: {storage: 1Gi}}
`
			// A Filesystem source of 1Gi: same-mode clones are fine for
			// archives, and kubevirt clones may cross modes.
			rules := newRules(t, boundClaim("src", "disk", "1Gi"))
			resp := validate(t, rules, dataVolumeRequest(t, admissionv1.Create, manifest, ""))
			assert.Equal(t, resp.Allowed, len(tt.wantCauses) == 0, "result: %+v", resp.Result)
			assert.DeepEqual(t, causes(resp), tt.wantCauses)
		})
	}
}

func TestValidateUpdate(t *testing.T) {
	rules := newRules(t, boundClaim("src", "disk", "5Gi"))
	t.Run("metadata-only update is allowed even after the source grew", func(t *testing.T) {
		old := cloneDV("disk", "2Gi", "")
		updated := strings.Replace(old, "  name: clone\n", "  name: clone\n  labels: {owner: me}\n", 1)
		assert.Assert(t, updated != old)
		resp := validate(t, rules, dataVolumeRequest(t, admissionv1.Update, updated, old))
		assert.Assert(t, resp.Allowed, "result: %+v", resp.Result)
	})
	t.Run("a changed spec is checked again", func(t *testing.T) {
		resp := validate(t, rules, dataVolumeRequest(t, admissionv1.Update, cloneDV("disk", "3Gi", ""), cloneDV("disk", "2Gi", "")))
		assert.Assert(t, !resp.Allowed)
		assert.DeepEqual(t, causes(resp), []string{`spec.pvc.resources.requests.storage: Invalid value: "3Gi": ` +
			`must be at least the size of the source PersistentVolumeClaim "src/disk" (5Gi)`})
	})
	t.Run("delete is allowed", func(t *testing.T) {
		req := dataVolumeRequest(t, admissionv1.Delete, cloneDV("disk", "1Gi", ""), "")
		assert.Assert(t, validate(t, rules, req).Allowed)
	})
}

func TestValidateRefusesWhatItCannotRead(t *testing.T) {
	rules := newRules(t)
	tests := []struct {
		name   string
		modify func(*admissionv1.AdmissionRequest)
	}{
		{"another resource", func(r *admissionv1.AdmissionRequest) { r.Resource.Resource = "persistentvolumeclaims" }},
		{"another group", func(r *admissionv1.AdmissionRequest) { r.Resource.Group = "" }},
		{"no object", func(r *admissionv1.AdmissionRequest) { r.Object.Raw = nil }},
		{"not JSON", func(r *admissionv1.AdmissionRequest) { r.Object.Raw = []byte("{") }},
		{"another kind", func(r *admissionv1.AdmissionRequest) {
			r.Object.Raw = []byte(`{"apiVersion":"cdi.kubevirt.io/v1beta1","kind":"CloneSource"}`)
		}},
		{"a wrong field type", func(r *admissionv1.AdmissionRequest) {
			r.Object.Raw = []byte(`{"apiVersion":"cdi.kubevirt.io/v1beta1","kind":"DataVolume","spec":{"pvc":7}}`)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := dataVolumeRequest(t, admissionv1.Create, cloneDV("disk", "1Gi", ""), "")
			tt.modify(&req.AdmissionRequest)
			resp := validate(t, rules, req)
			assert.Assert(t, !resp.Allowed)
			assert.Equal(t, resp.Result.Code, int32(http.StatusBadRequest), cmp.Diff(nil, resp.Result))
		})
	}
}
