// Package plan gives a DataVolume spec its one typed reading: where the data
// comes from, what claim receives it, whether scratch space is needed up
// front, and which cloner command moves it. The registry's validation, the
// apiserver's clone gate, the admission webhook (DataVolumes and
// VirtualMachine templates) and the controller all read a spec through it,
// so each of these rules lives here and nowhere else.
package plan

import (
	"net/url"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/datavolume/datavolume/pkg/apis/cdi"
	"github.com/datavolume/datavolume/pkg/apis/cdi/matrix"
)

// SourceKind is the kind of source a DataVolume moves data from.
type SourceKind string

// The source kinds, named as the members of spec.source.
const (
	SourceNone     SourceKind = ""
	SourceHTTP     SourceKind = "http"
	SourceRegistry SourceKind = "registry"
	SourcePVC      SourceKind = "pvc"
	SourceUpload   SourceKind = "upload"
	SourceBlank    SourceKind = "blank"
)

// Command is the datavolume-cloner subcommand that moves a DataVolume's data.
type Command string

// The cloner commands the controller runs.
const (
	CommandNone   Command = ""
	CommandImport Command = "import"
	CommandClone  Command = "clone"
	CommandUpload Command = "upload-server"
	CommandBlank  Command = "blank"
)

// ClaimRef names a PersistentVolumeClaim.
type ClaimRef struct {
	Namespace string
	Name      string
}

// String is namespace/name.
func (r ClaimRef) String() string { return r.Namespace + "/" + r.Name }

// Target is the claim a spec asks for, from spec.pvc or spec.storage.
type Target struct {
	// Path is spec.pvc or spec.storage (under the path the spec was read at).
	Path *field.Path
	// Storage says the claim came from spec.storage: fields left out are
	// filled from defaults, and a Filesystem claim is grown by the
	// filesystem overhead.
	Storage bool
	// Size is the requested storage; nil when left out (spec.storage only).
	Size *resource.Quantity
	// VolumeMode is the requested mode; Filesystem when left out.
	VolumeMode corev1.PersistentVolumeMode
	// VolumeModeSet says the spec named the mode.
	VolumeModeSet bool
	// AccessModes are the requested access modes, as given.
	AccessModes []corev1.PersistentVolumeAccessMode
	// StorageClassName is the requested class; nil for the default class.
	StorageClassName *string
}

// SizePath is the field path of the requested size.
func (t *Target) SizePath() *field.Path {
	return t.Path.Child("resources", "requests", string(corev1.ResourceStorage))
}

// Plan is one reading of a DataVolume spec.
type Plan struct {
	// Kind is the kind of source; SourceNone when the spec names none or
	// several (validation reports it).
	Kind SourceKind
	// ContentType is the spec's content type, kubevirt when left out.
	ContentType cdi.DataVolumeContentType
	// Target is the claim to create; nil when the spec sets neither or both
	// of pvc and storage (validation reports it).
	Target *Target
	// CloneSource is the claim a clone copies, its namespace defaulted to
	// the DataVolume's; nil unless Kind is SourcePVC with a name.
	CloneSource *ClaimRef
	// Endpoint is the matrix column an import reads from ("" for clones and
	// blanks, or an unparsable URL).
	Endpoint matrix.Endpoint
	// Command is the cloner command that moves the data.
	Command Command
}

// For reads the spec of a DataVolume in namespace.
func For(namespace string, spec *cdi.DataVolumeSpec) *Plan {
	return At(namespace, spec, field.NewPath("spec"))
}

// At reads a spec found at fldPath (a VirtualMachine's template, say), so the
// target's path names the field in the admitted object.
func At(namespace string, spec *cdi.DataVolumeSpec, fldPath *field.Path) *Plan {
	p := &Plan{ContentType: ContentType(spec), Target: targetOf(spec, fldPath)}
	p.Kind = kindOf(spec.Source)
	switch p.Kind {
	case SourceHTTP:
		p.Command = CommandImport
		p.Endpoint = HTTPEndpoint(spec.Source.HTTP)
	case SourceRegistry:
		p.Command = CommandImport
		p.Endpoint = matrix.EndpointRegistry
	case SourceUpload:
		p.Command = CommandUpload
		p.Endpoint = matrix.EndpointUpload
	case SourceBlank:
		p.Command = CommandBlank
	case SourcePVC:
		p.Command = CommandClone
		if spec.Source.PVC.Name != "" {
			ns := spec.Source.PVC.Namespace
			if ns == "" {
				ns = namespace
			}
			p.CloneSource = &ClaimRef{Namespace: ns, Name: spec.Source.PVC.Name}
		}
	}
	return p
}

// ContentType is the spec's content type, kubevirt when left out.
func ContentType(spec *cdi.DataVolumeSpec) cdi.DataVolumeContentType {
	if spec.ContentType == "" {
		return cdi.DataVolumeKubeVirt
	}
	return spec.ContentType
}

// IsClone says the spec clones a named claim.
func (p *Plan) IsClone() bool { return p.CloneSource != nil }

// IsCrossNamespace says the spec clones a claim of another namespace than
// the DataVolume's own, which needs the clone permission.
func (p *Plan) IsCrossNamespace(namespace string) bool {
	return p.CloneSource != nil && p.CloneSource.Namespace != namespace
}

// ScratchUpFront says the import needs scratch space whatever the image's
// format turns out to be: every format the matrix supports from this
// endpoint for this content type is staged first (registry and upload).
// Other imports start without scratch, and the cloner asks for it when the
// format it finds needs it.
func (p *Plan) ScratchUpFront() bool {
	if p.Endpoint == "" {
		return false
	}
	return matrix.AlwaysStaged(matrix.ContentType(p.ContentType), p.Endpoint)
}

func kindOf(source *cdi.DataVolumeSource) SourceKind {
	if kinds := SourceKinds(source); len(kinds) == 1 {
		return kinds[0]
	}
	return SourceNone
}

// SourceKinds lists the members of spec.source that are set: one in a valid
// spec, and validation names them all when there are more.
func SourceKinds(source *cdi.DataVolumeSource) []SourceKind {
	if source == nil {
		return nil
	}
	var kinds []SourceKind
	if source.HTTP != nil {
		kinds = append(kinds, SourceHTTP)
	}
	if source.Registry != nil {
		kinds = append(kinds, SourceRegistry)
	}
	if source.PVC != nil {
		kinds = append(kinds, SourcePVC)
	}
	if source.Upload != nil {
		kinds = append(kinds, SourceUpload)
	}
	if source.Blank != nil {
		kinds = append(kinds, SourceBlank)
	}
	return kinds
}

// HTTPEndpoint is the matrix column of an HTTP source: basic auth when a
// secret is named, else by the URL's scheme; "" for a URL that is neither
// http nor https (validation reports it).
func HTTPEndpoint(h *cdi.DataVolumeSourceHTTP) matrix.Endpoint {
	if h.SecretRef != "" {
		return matrix.EndpointHTTPBasicAuth
	}
	u, err := url.Parse(h.URL)
	if err != nil {
		return ""
	}
	switch u.Scheme {
	case "https":
		return matrix.EndpointHTTPS
	case "http":
		return matrix.EndpointHTTP
	}
	return ""
}

func targetOf(spec *cdi.DataVolumeSpec, fldPath *field.Path) *Target {
	switch {
	case spec.PVC != nil && spec.Storage == nil:
		return newTarget(fldPath.Child("pvc"), false, spec.PVC.Resources.Requests, spec.PVC.VolumeMode,
			spec.PVC.AccessModes, spec.PVC.StorageClassName)
	case spec.Storage != nil && spec.PVC == nil:
		return newTarget(fldPath.Child("storage"), true, spec.Storage.Resources.Requests, spec.Storage.VolumeMode,
			spec.Storage.AccessModes, spec.Storage.StorageClassName)
	default:
		return nil
	}
}

func newTarget(path *field.Path, storage bool, requests corev1.ResourceList, mode *corev1.PersistentVolumeMode,
	accessModes []corev1.PersistentVolumeAccessMode, class *string) *Target {
	t := &Target{Path: path, Storage: storage, VolumeMode: corev1.PersistentVolumeFilesystem,
		AccessModes: accessModes, StorageClassName: class}
	if mode != nil {
		t.VolumeMode, t.VolumeModeSet = *mode, true
	}
	if size, ok := requests[corev1.ResourceStorage]; ok {
		t.Size = &size
	}
	return t
}
