package validation

import (
	"strings"
	"testing"

	"gotest.tools/v3/assert"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/datavolume/datavolume/pkg/apis/cdi"
)

func claim(size string, mode corev1.PersistentVolumeMode) *corev1.PersistentVolumeClaimSpec {
	spec := &corev1.PersistentVolumeClaimSpec{AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}}
	if size != "" {
		spec.Resources.Requests = corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)}
	}
	if mode != "" {
		spec.VolumeMode = &mode
	}
	return spec
}

func httpSource(url string) *cdi.DataVolumeSource {
	return &cdi.DataVolumeSource{HTTP: &cdi.DataVolumeSourceHTTP{URL: url}}
}

// errorsOf renders a list as "type field" pairs, so tests pin down what is
// reported and where, not the exact wording.
func errorsOf(errs field.ErrorList) []string {
	var out []string
	for _, e := range errs {
		out = append(out, string(e.Type)+" "+e.Field)
	}
	return out
}

func TestValidateDataVolumeSpec(t *testing.T) {
	tests := map[string]struct {
		spec cdi.DataVolumeSpec
		want []string
	}{
		"seed clone": {
			spec: cdi.DataVolumeSpec{Source: &cdi.DataVolumeSource{PVC: &cdi.DataVolumeSourcePVC{Namespace: "example-ns", Name: "source-pvc"}}, PVC: claim("1G", "")},
		},
		"seed block clone": {
			spec: cdi.DataVolumeSpec{Source: &cdi.DataVolumeSource{PVC: &cdi.DataVolumeSourcePVC{Namespace: "src", Name: "disk"}}, PVC: claim("2Gi", corev1.PersistentVolumeBlock)},
		},
		"no source": {
			spec: cdi.DataVolumeSpec{PVC: claim("1Gi", "")},
			want: []string{"FieldValueRequired spec.source"},
		},
		"empty source": {
			spec: cdi.DataVolumeSpec{Source: &cdi.DataVolumeSource{}, PVC: claim("1Gi", "")},
			want: []string{"FieldValueRequired spec.source"},
		},
		"two sources": {
			spec: cdi.DataVolumeSpec{Source: &cdi.DataVolumeSource{Blank: &cdi.DataVolumeBlankImage{}, Upload: &cdi.DataVolumeSourceUpload{}}, PVC: claim("1Gi", "")},
			want: []string{"FieldValueForbidden spec.source"},
		},
		"neither pvc nor storage": {
			spec: cdi.DataVolumeSpec{Source: httpSource("http://h/disk.img")},
			want: []string{"FieldValueRequired spec.pvc"},
		},
		"both pvc and storage": {
			spec: cdi.DataVolumeSpec{Source: httpSource("http://h/disk.img"), PVC: claim("1Gi", ""), Storage: &cdi.StorageSpec{}},
			want: []string{"FieldValueForbidden spec.storage"},
		},
		"pvc without size or access modes": {
			spec: cdi.DataVolumeSpec{Source: httpSource("http://h/disk.img"), PVC: &corev1.PersistentVolumeClaimSpec{}},
			want: []string{"FieldValueRequired spec.pvc.accessModes", "FieldValueRequired spec.pvc.resources.requests.storage"},
		},
		"zero size": {
			spec: cdi.DataVolumeSpec{Source: httpSource("http://h/disk.img"), PVC: claim("0", "")},
			want: []string{"FieldValueInvalid spec.pvc.resources.requests.storage"},
		},
		"storage clone may leave size out": {
			spec: cdi.DataVolumeSpec{Source: &cdi.DataVolumeSource{PVC: &cdi.DataVolumeSourcePVC{Name: "disk"}}, Storage: &cdi.StorageSpec{}},
		},
		"a spec with two sources is no clone: storage needs size": {
			spec: cdi.DataVolumeSpec{Source: &cdi.DataVolumeSource{PVC: &cdi.DataVolumeSourcePVC{Name: "disk"}, Blank: &cdi.DataVolumeBlankImage{}}, Storage: &cdi.StorageSpec{}},
			want: []string{"FieldValueForbidden spec.source", "FieldValueRequired spec.storage.resources.requests.storage"},
		},
		"storage import needs size": {
			spec: cdi.DataVolumeSpec{Source: httpSource("http://h/disk.img"), Storage: &cdi.StorageSpec{}},
			want: []string{"FieldValueRequired spec.storage.resources.requests.storage"},
		},
		"bad volume mode and access mode": {
			spec: cdi.DataVolumeSpec{Source: httpSource("http://h/disk.img"), PVC: func() *corev1.PersistentVolumeClaimSpec {
				c := claim("1Gi", "Tape")
				c.AccessModes = []corev1.PersistentVolumeAccessMode{"ReadSometimes"}
				return c
			}()},
			want: []string{"FieldValueNotSupported spec.pvc.accessModes[0]", "FieldValueNotSupported spec.pvc.volumeMode"},
		},
		"bad urls": {
			spec: cdi.DataVolumeSpec{Source: httpSource("ftp://h/disk.img"), PVC: claim("1Gi", "")},
			want: []string{"FieldValueInvalid spec.source.http.url"},
		},
		"url without host": {
			spec: cdi.DataVolumeSpec{Source: httpSource("http:///disk.img"), PVC: claim("1Gi", "")},
			want: []string{"FieldValueInvalid spec.source.http.url"},
		},
		"registry url scheme": {
			spec: cdi.DataVolumeSpec{Source: &cdi.DataVolumeSource{Registry: &cdi.DataVolumeSourceRegistry{URL: "https://quay.io/disk"}}, PVC: claim("1Gi", "")},
			want: []string{"FieldValueInvalid spec.source.registry.url"},
		},
		"registry pull method": {
			spec: cdi.DataVolumeSpec{Source: &cdi.DataVolumeSource{Registry: &cdi.DataVolumeSourceRegistry{URL: "docker://quay.io/disk", PullMethod: "carrier-pigeon"}}, PVC: claim("1Gi", "")},
			want: []string{"FieldValueNotSupported spec.source.registry.pullMethod"},
		},
		"checksums": {
			spec: cdi.DataVolumeSpec{Source: &cdi.DataVolumeSource{HTTP: &cdi.DataVolumeSourceHTTP{URL: "https://h/d.img", Checksum: "sha256:abc"}}, PVC: claim("1Gi", "")},
			want: []string{"FieldValueInvalid spec.source.http.checksum"},
		},
		"good checksum and headers": {
			spec: cdi.DataVolumeSpec{Source: &cdi.DataVolumeSource{HTTP: &cdi.DataVolumeSourceHTTP{
				URL: "https://h/d.img", Checksum: "md5:d41d8cd98f00b204e9800998ecf8427e", ExtraHeaders: []string{"X-Token: 1"}, SecretRef: "creds", CertConfigMap: "ca",
			}}, PVC: claim("1Gi", "")},
		},
		"bad header and secret name": {
			spec: cdi.DataVolumeSpec{Source: &cdi.DataVolumeSource{HTTP: &cdi.DataVolumeSourceHTTP{
				URL: "https://h/d.img", ExtraHeaders: []string{"no colon"}, SecretRef: "Not_A_Name",
			}}, PVC: claim("1Gi", "")},
			want: []string{"FieldValueInvalid spec.source.http.secretRef", "FieldValueInvalid spec.source.http.extraHeaders[0]"},
		},
		"unknown content type": {
			spec: cdi.DataVolumeSpec{Source: httpSource("http://h/d.img"), PVC: claim("1Gi", ""), ContentType: "iso"},
			want: []string{"FieldValueNotSupported spec.contentType"},
		},
		"pvc source without name and bad namespace": {
			spec: cdi.DataVolumeSpec{Source: &cdi.DataVolumeSource{PVC: &cdi.DataVolumeSourcePVC{Namespace: "Bad_NS"}}, PVC: claim("1Gi", "")},
			want: []string{"FieldValueRequired spec.source.pvc.name", "FieldValueInvalid spec.source.pvc.namespace"},
		},
		"every problem at once": {
			spec: cdi.DataVolumeSpec{ContentType: cdi.DataVolumeArchive,
				Source: &cdi.DataVolumeSource{HTTP: &cdi.DataVolumeSourceHTTP{URL: "gopher://x", Checksum: "crc:1"}, Upload: &cdi.DataVolumeSourceUpload{}},
				PVC:    claim("0", corev1.PersistentVolumeBlock)},
			want: []string{
				"FieldValueForbidden spec.source",
				"FieldValueInvalid spec.source.http.url",
				"FieldValueInvalid spec.source.http.checksum",
				"FieldValueForbidden spec.source.upload",
				"FieldValueInvalid spec.pvc.resources.requests.storage",
				"FieldValueForbidden spec.pvc.volumeMode",
			},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			assert.DeepEqual(t, errorsOf(ValidateDataVolumeSpec(&tc.spec, field.NewPath("spec"))), tc.want)
		})
	}
}

// Every cell of the seed's matrix that static validation can decide: which
// sources each content type may use, and archive never into Block.
func TestContentTypeMatrix(t *testing.T) {
	sources := map[string]*cdi.DataVolumeSource{
		"http":            httpSource("http://h/d"),
		"https":           httpSource("https://h/d"),
		"http-basic-auth": {HTTP: &cdi.DataVolumeSourceHTTP{URL: "http://h/d", SecretRef: "creds"}},
		"registry":        {Registry: &cdi.DataVolumeSourceRegistry{URL: "docker://r/d:1"}},
		"upload":          {Upload: &cdi.DataVolumeSourceUpload{}},
		"blank":           {Blank: &cdi.DataVolumeBlankImage{}},
		"pvc":             {PVC: &cdi.DataVolumeSourcePVC{Name: "d"}},
	}
	allowed := map[cdi.DataVolumeContentType]map[string]bool{
		cdi.DataVolumeKubeVirt: {"http": true, "https": true, "http-basic-auth": true, "registry": true, "upload": true, "blank": true, "pvc": true},
		cdi.DataVolumeArchive:  {"http": true, "https": true, "http-basic-auth": true, "registry": false, "upload": false, "blank": false, "pvc": true},
	}
	for contentType, row := range allowed {
		for source, ok := range row {
			for _, mode := range []corev1.PersistentVolumeMode{corev1.PersistentVolumeFilesystem, corev1.PersistentVolumeBlock} {
				spec := cdi.DataVolumeSpec{ContentType: contentType, Source: sources[source], PVC: claim("1Gi", mode)}
				errs := ValidateDataVolumeSpec(&spec, field.NewPath("spec"))
				wantOK := ok && (mode != corev1.PersistentVolumeBlock || contentType != cdi.DataVolumeArchive)
				assert.Check(t, (len(errs) == 0) == wantOK, "%s from %s into %s: %v", contentType, source, mode, errs)
			}
		}
	}
}

func TestUpdateKeepsSpecImmutable(t *testing.T) {
	old := &cdi.DataVolume{
		ObjectMeta: metav1.ObjectMeta{Name: "dv", Namespace: "ns", ResourceVersion: "1"},
		Spec:       cdi.DataVolumeSpec{Source: httpSource("http://h/d"), PVC: claim("1Gi", ""), ContentType: cdi.DataVolumeKubeVirt},
	}
	relabelled := old.DeepCopy()
	relabelled.Labels = map[string]string{"a": "b"}
	assert.Check(t, len(ValidateDataVolumeUpdate(relabelled, old)) == 0)

	changed := old.DeepCopy()
	changed.Spec.PVC = claim("2Gi", "")
	changed.Spec.ContentType = cdi.DataVolumeArchive
	assert.DeepEqual(t, errorsOf(ValidateDataVolumeUpdate(changed, old)),
		[]string{"FieldValueForbidden spec.pvc", "FieldValueForbidden spec.contentType"})
}

func TestValidateStatus(t *testing.T) {
	good := cdi.DataVolumeStatus{Phase: cdi.CloneInProgress, Progress: "45.10%", Conditions: []cdi.DataVolumeCondition{
		{Type: cdi.DataVolumeBound, Status: corev1.ConditionTrue}, {Type: cdi.DataVolumeReady, Status: corev1.ConditionFalse},
	}}
	assert.Check(t, len(ValidateDataVolumeStatus(&good, field.NewPath("status"))) == 0)
	bad := cdi.DataVolumeStatus{Phase: "Dancing", Progress: "101%", RestartCount: -1, Conditions: []cdi.DataVolumeCondition{
		{Type: cdi.DataVolumeBound, Status: "Maybe"}, {Type: cdi.DataVolumeBound, Status: corev1.ConditionTrue},
	}}
	assert.DeepEqual(t, errorsOf(ValidateDataVolumeStatus(&bad, field.NewPath("status"))), []string{
		"FieldValueNotSupported status.phase",
		"FieldValueInvalid status.restartCount",
		"FieldValueInvalid status.progress",
		"FieldValueNotSupported status.conditions[0].status",
		"FieldValueDuplicate status.conditions[1].type",
	})
}

func TestURLErrorsDoNotRepeatCredentials(t *testing.T) {
	spec := cdi.DataVolumeSpec{Source: httpSource("http://user:secret@h/%zz"), PVC: claim("1Gi", "")}
	errs := ValidateDataVolumeSpec(&spec, field.NewPath("spec"))
	assert.Equal(t, len(errs), 1)
	assert.Check(t, !strings.Contains(errs[0].Detail, "secret"), errs[0].Detail)
}
