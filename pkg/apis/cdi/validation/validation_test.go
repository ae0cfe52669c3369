package validation

import (
	"strings"
	"testing"

	"gotest.tools/v3/assert"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/datavolume/datavolume/pkg/apis/cdi"
	"github.com/datavolume/datavolume/pkg/apis/cdi/install"
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

// Credentials belong in a Secret named by secretRef: a URL carrying them
// would be stored, shown to everyone who may read the DataVolume and written
// to the audit log. The refusal points to secretRef and repeats neither the
// password nor a query string (a presigned URL's signature).
func TestURLsWithCredentialsAreRefused(t *testing.T) {
	tests := []struct {
		name   string
		source *cdi.DataVolumeSource
		want   string
	}{{
		name:   "http user and password",
		source: httpSource("https://user:hunter2@images.example/disk.img?X-Amz-Signature=sig0"),
		want: `spec.source.http.url: Invalid value: "https://images.example/disk.img": must not carry credentials (user:password@): ` +
			`put them in a Secret (keys accessKeyId and secretKey) in the DataVolume's namespace and name it in spec.source.http.secretRef`,
	}, {
		name:   "http token as user",
		source: httpSource("http://hunter2@images.example/disk.img"),
		want: `spec.source.http.url: Invalid value: "http://images.example/disk.img": must not carry credentials (user:password@): ` +
			`put them in a Secret (keys accessKeyId and secretKey) in the DataVolume's namespace and name it in spec.source.http.secretRef`,
	}, {
		name:   "registry user and password",
		source: &cdi.DataVolumeSource{Registry: &cdi.DataVolumeSourceRegistry{URL: "docker://user:hunter2@registry.example/disk:1"}},
		want: `spec.source.registry.url: Invalid value: "docker://registry.example/disk:1": must not carry credentials (user:password@): ` +
			`put them in a Secret (keys accessKeyId and secretKey) in the DataVolume's namespace and name it in spec.source.registry.secretRef`,
	}, {
		name:   "a bad scheme is not echoed with its credentials or query",
		source: httpSource("ftp://user:hunter2@images.example/disk.img?token=sig0"),
		want:   `spec.source.http.url: Invalid value: "ftp://images.example/disk.img": scheme must be http or https`,
	}, {
		name:   "an unparsable URL is not echoed at all",
		source: httpSource("http://user:hunter2@h/%zz?token=sig0"),
		want:   `spec.source.http.url: Invalid value: not a URL: invalid URL escape "%zz"`,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := cdi.DataVolumeSpec{Source: tt.source, PVC: claim("1Gi", "")}
			errs := ValidateDataVolumeSpec(&spec, field.NewPath("spec"))
			assert.Assert(t, len(errs) > 0, "accepted")
			assert.Equal(t, errs.ToAggregate().Error(), tt.want)
			for _, secret := range []string{"hunter2", "sig0"} {
				assert.Check(t, !strings.Contains(errs.ToAggregate().Error(), secret), "the error repeats %q", secret)
			}
		})
	}
	t.Run("a presigned URL without user information is accepted", func(t *testing.T) {
		spec := cdi.DataVolumeSpec{Source: httpSource("https://bucket.s3.example/disk.img?X-Amz-Signature=sig0"), PVC: claim("1Gi", "")}
		assert.Equal(t, len(ValidateDataVolumeSpec(&spec, field.NewPath("spec"))), 0)
	})
}

// A v1alpha1 DataVolume is validated as the internal one it converts to:
// its http and registry URLs are refused with credentials too.
func TestV1alpha1URLsWithCredentialsAreRefused(t *testing.T) {
	scheme := runtime.NewScheme()
	install.Install(scheme)
	decoder := serializer.NewCodecFactory(scheme).UniversalDecoder()
	for source, path := range map[string]string{
		`{"http": {"url": "https://user:hunter2@images.example/disk.img"}}`: "spec.source.http.url",
		`{"registry": {"url": "docker://user:hunter2@registry.example/d"}}`: "spec.source.registry.url",
	} {
		t.Run(path, func(t *testing.T) {
			manifest := `{"apiVersion": "cdi.kubevirt.io/v1alpha1", "kind": "DataVolume", "metadata": {"name": "dv", "namespace": "ns"},
				"spec": {"source": ` + source + `, "pvc": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}}`
			obj, _, err := decoder.Decode([]byte(manifest), nil, nil)
			assert.NilError(t, err)
			errs := ValidateDataVolume(obj.(*cdi.DataVolume))
			assert.DeepEqual(t, errorsOf(errs), []string{"FieldValueInvalid " + path})
			assert.Check(t, !strings.Contains(errs.ToAggregate().Error(), "hunter2"), errs.ToAggregate().Error())
		})
	}
}
