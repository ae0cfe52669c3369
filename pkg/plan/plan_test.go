package plan

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"gotest.tools/v3/assert"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/datavolume/datavolume/pkg/apis/cdi"
	"github.com/datavolume/datavolume/pkg/apis/cdi/matrix"
)

func pvcSpec(size string, mode *corev1.PersistentVolumeMode) *corev1.PersistentVolumeClaimSpec {
	return &corev1.PersistentVolumeClaimSpec{
		AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
		Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)}},
		VolumeMode:  mode,
	}
}

func TestForReadsEachSourceKind(t *testing.T) {
	block := corev1.PersistentVolumeBlock
	tests := []struct {
		name           string
		spec           cdi.DataVolumeSpec
		kind           SourceKind
		command        Command
		endpoint       matrix.Endpoint
		cloneSource    *ClaimRef
		crossNamespace bool
		scratch        bool
	}{
		{"http", cdi.DataVolumeSpec{Source: &cdi.DataVolumeSource{HTTP: &cdi.DataVolumeSourceHTTP{URL: "http://h/d.qcow2"}}},
			SourceHTTP, CommandImport, matrix.EndpointHTTP, nil, false, false},
		{"https", cdi.DataVolumeSpec{Source: &cdi.DataVolumeSource{HTTP: &cdi.DataVolumeSourceHTTP{URL: "https://h/d.qcow2"}}},
			SourceHTTP, CommandImport, matrix.EndpointHTTPS, nil, false, false},
		{"basic auth", cdi.DataVolumeSpec{Source: &cdi.DataVolumeSource{HTTP: &cdi.DataVolumeSourceHTTP{URL: "https://h/d", SecretRef: "s"}}},
			SourceHTTP, CommandImport, matrix.EndpointHTTPBasicAuth, nil, false, false},
		{"registry", cdi.DataVolumeSpec{Source: &cdi.DataVolumeSource{Registry: &cdi.DataVolumeSourceRegistry{URL: "docker://r/i"}}},
			SourceRegistry, CommandImport, matrix.EndpointRegistry, nil, false, true},
		{"upload", cdi.DataVolumeSpec{Source: &cdi.DataVolumeSource{Upload: &cdi.DataVolumeSourceUpload{}}},
			SourceUpload, CommandUpload, matrix.EndpointUpload, nil, false, true},
		{"blank", cdi.DataVolumeSpec{Source: &cdi.DataVolumeSource{Blank: &cdi.DataVolumeBlankImage{}}, PVC: pvcSpec("1Gi", &block)},
			SourceBlank, CommandBlank, "", nil, false, false},
		{"same-namespace clone", cdi.DataVolumeSpec{Source: &cdi.DataVolumeSource{PVC: &cdi.DataVolumeSourcePVC{Name: "disk"}}},
			SourcePVC, CommandClone, "", &ClaimRef{Namespace: "dst", Name: "disk"}, false, false},
		{"cross-namespace clone", cdi.DataVolumeSpec{Source: &cdi.DataVolumeSource{PVC: &cdi.DataVolumeSourcePVC{Namespace: "src", Name: "disk"}}},
			SourcePVC, CommandClone, "", &ClaimRef{Namespace: "src", Name: "disk"}, true, false},
		{"clone without a name", cdi.DataVolumeSpec{Source: &cdi.DataVolumeSource{PVC: &cdi.DataVolumeSourcePVC{Namespace: "src"}}},
			SourcePVC, CommandClone, "", nil, false, false},
		{"two sources", cdi.DataVolumeSpec{Source: &cdi.DataVolumeSource{Blank: &cdi.DataVolumeBlankImage{}, Upload: &cdi.DataVolumeSourceUpload{}}},
			SourceNone, CommandNone, "", nil, false, false},
		{"no source", cdi.DataVolumeSpec{}, SourceNone, CommandNone, "", nil, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := For("dst", &tt.spec)
			assert.Equal(t, p.Kind, tt.kind)
			assert.Equal(t, p.Command, tt.command)
			assert.Equal(t, p.Endpoint, tt.endpoint)
			assert.DeepEqual(t, p.CloneSource, tt.cloneSource)
			assert.Equal(t, p.IsCrossNamespace("dst"), tt.crossNamespace)
			assert.Equal(t, p.ScratchUpFront(), tt.scratch)
			assert.Equal(t, p.ContentType, cdi.DataVolumeKubeVirt)
		})
	}
}

func TestTargetComesFromPVCOrStorage(t *testing.T) {
	block := corev1.PersistentVolumeBlock
	class := "fast"
	fromPVC := For("ns", &cdi.DataVolumeSpec{PVC: pvcSpec("2Gi", &block)}).Target
	size := resource.MustParse("2Gi")
	assert.DeepEqual(t, fromPVC, &Target{
		Path: field.NewPath("spec", "pvc"), Size: &size, VolumeMode: block, VolumeModeSet: true,
		AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
	}, cmp.Comparer(func(a, b resource.Quantity) bool { return a.Cmp(b) == 0 }), cmp.Comparer(func(a, b *field.Path) bool { return a.String() == b.String() }))
	assert.Equal(t, fromPVC.SizePath().String(), "spec.pvc.resources.requests.storage")

	fromStorage := At("ns", &cdi.DataVolumeSpec{Storage: &cdi.StorageSpec{StorageClassName: &class}},
		field.NewPath("spec", "dataVolumeTemplates").Index(0).Child("spec")).Target
	assert.Assert(t, fromStorage.Storage)
	assert.Assert(t, fromStorage.Size == nil)
	assert.Equal(t, fromStorage.VolumeMode, corev1.PersistentVolumeFilesystem)
	assert.Assert(t, !fromStorage.VolumeModeSet)
	assert.Equal(t, *fromStorage.StorageClassName, "fast")
	assert.Equal(t, fromStorage.Path.String(), "spec.dataVolumeTemplates[0].spec.storage")

	assert.Assert(t, For("ns", &cdi.DataVolumeSpec{}).Target == nil)
	assert.Assert(t, For("ns", &cdi.DataVolumeSpec{PVC: pvcSpec("1Gi", nil), Storage: &cdi.StorageSpec{}}).Target == nil)
}

func TestArchiveContentType(t *testing.T) {
	p := For("ns", &cdi.DataVolumeSpec{ContentType: cdi.DataVolumeArchive,
		Source: &cdi.DataVolumeSource{HTTP: &cdi.DataVolumeSourceHTTP{URL: "http://h/a.tar"}}})
	assert.Equal(t, p.ContentType, cdi.DataVolumeArchive)
	assert.Assert(t, !p.ScratchUpFront())
}

func TestSourceKindsNamesEveryMemberSet(t *testing.T) {
	assert.Assert(t, SourceKinds(nil) == nil)
	assert.DeepEqual(t, SourceKinds(&cdi.DataVolumeSource{HTTP: &cdi.DataVolumeSourceHTTP{}, PVC: &cdi.DataVolumeSourcePVC{}, Blank: &cdi.DataVolumeBlankImage{}}),
		[]SourceKind{SourceHTTP, SourcePVC, SourceBlank})
}

// The matrix spells content types itself so the cloner can read it without
// the API types; they must be the API's words.
func TestMatrixContentTypesAreTheAPIs(t *testing.T) {
	assert.Equal(t, string(matrix.KubeVirt), string(cdi.DataVolumeKubeVirt))
	assert.Equal(t, string(matrix.Archive), string(cdi.DataVolumeArchive))
}
