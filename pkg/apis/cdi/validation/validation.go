// Package validation holds the static rules of a DataVolume: the rules that
// need nothing but the object itself. The registry enforces them on every
// write and the admission webhook reuses them for VirtualMachine
// dataVolumeTemplates. Every problem is reported, each with its field path.
// The spec is read through pkg/plan and checked against pkg/apis/cdi/matrix,
// as the webhook and the controller read it.
package validation

import (
	"encoding/hex"
	"fmt"
	"net/url"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apimachineryvalidation "k8s.io/apimachinery/pkg/api/validation"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/datavolume/datavolume/pkg/apis/cdi"
	"github.com/datavolume/datavolume/pkg/apis/cdi/matrix"
	"github.com/datavolume/datavolume/pkg/plan"
	"github.com/datavolume/datavolume/pkg/redact"
)

// checksumHexLen is the hex digest length of each supported checksum algorithm.
var checksumHexLen = map[string]int{"md5": 32, "sha1": 40, "sha256": 64, "sha512": 128}

// ValidateDataVolume validates a DataVolume being created.
func ValidateDataVolume(dv *cdi.DataVolume) field.ErrorList {
	allErrs := apimachineryvalidation.ValidateObjectMeta(&dv.ObjectMeta, true,
		apimachineryvalidation.NameIsDNSSubdomain, field.NewPath("metadata"))
	allErrs = append(allErrs, ValidateDataVolumeSpec(&dv.Spec, field.NewPath("spec"))...)
	return allErrs
}

// ValidateDataVolumeUpdate validates an update: metadata may change, the spec
// may not (the data has been, or is being, moved according to it).
func ValidateDataVolumeUpdate(dv, old *cdi.DataVolume) field.ErrorList {
	allErrs := apimachineryvalidation.ValidateObjectMetaUpdate(&dv.ObjectMeta, &old.ObjectMeta, field.NewPath("metadata"))
	allErrs = append(allErrs, validateSpecUnchanged(&dv.Spec, &old.Spec, field.NewPath("spec"))...)
	return allErrs
}

// ValidateDataVolumeStatusUpdate validates a write to the status subresource.
func ValidateDataVolumeStatusUpdate(dv, old *cdi.DataVolume) field.ErrorList {
	allErrs := apimachineryvalidation.ValidateObjectMetaUpdate(&dv.ObjectMeta, &old.ObjectMeta, field.NewPath("metadata"))
	allErrs = append(allErrs, ValidateDataVolumeStatus(&dv.Status, field.NewPath("status"))...)
	return allErrs
}

// ValidateDataVolumeSpec validates a spec on its own; the webhook calls it
// for each VirtualMachine dataVolumeTemplate.
func ValidateDataVolumeSpec(spec *cdi.DataVolumeSpec, fldPath *field.Path) field.ErrorList {
	// The spec is read as everything else reads it. The namespace only
	// defaults a clone's source namespace, which no static rule looks at.
	p := plan.At("", spec, fldPath)
	var allErrs field.ErrorList
	if p.ContentType != cdi.DataVolumeKubeVirt && p.ContentType != cdi.DataVolumeArchive {
		allErrs = append(allErrs, field.NotSupported(fldPath.Child("contentType"), spec.ContentType,
			[]string{string(cdi.DataVolumeKubeVirt), string(cdi.DataVolumeArchive)}))
	}

	allErrs = append(allErrs, validateSource(spec.Source, p.ContentType, fldPath.Child("source"))...)

	switch {
	case p.Target != nil:
		// A clone's size may be left out of storage: it is the source's size.
		sizeOptional := p.Target.Storage && p.Kind == plan.SourcePVC
		allErrs = append(allErrs, validateClaim(p.Target, sizeOptional, p.ContentType)...)
	case spec.PVC == nil && spec.Storage == nil:
		allErrs = append(allErrs, field.Required(fldPath.Child("pvc"), "exactly one of pvc or storage must be set"))
	default:
		allErrs = append(allErrs, field.Forbidden(fldPath.Child("storage"), "exactly one of pvc or storage may be set, not both"))
	}
	return allErrs
}

func validateSource(source *cdi.DataVolumeSource, contentType cdi.DataVolumeContentType, fldPath *field.Path) field.ErrorList {
	if source == nil {
		return field.ErrorList{field.Required(fldPath, "one of http, registry, pvc, upload or blank must be set")}
	}
	var allErrs field.ErrorList
	switch kinds := plan.SourceKinds(source); len(kinds) {
	case 0:
		allErrs = append(allErrs, field.Required(fldPath, "one of http, registry, pvc, upload or blank must be set"))
	case 1:
	default:
		names := make([]string, len(kinds))
		for i, kind := range kinds {
			names[i] = string(kind)
		}
		allErrs = append(allErrs, field.Forbidden(fldPath, fmt.Sprintf("exactly one source may be set, found %s", strings.Join(names, ", "))))
	}

	if source.HTTP != nil {
		allErrs = append(allErrs, validateHTTP(source.HTTP, contentType, fldPath.Child("http"))...)
	}
	if source.Registry != nil {
		allErrs = append(allErrs, validateRegistry(source.Registry, fldPath.Child("registry"))...)
		allErrs = append(allErrs, checkEndpoint(contentType, matrix.EndpointRegistry, fldPath.Child("registry"))...)
	}
	if source.Upload != nil {
		allErrs = append(allErrs, checkEndpoint(contentType, matrix.EndpointUpload, fldPath.Child("upload"))...)
	}
	if source.Blank != nil && contentType == cdi.DataVolumeArchive {
		allErrs = append(allErrs, field.Forbidden(fldPath.Child("blank"), "a blank image is a disk image: contentType archive is not supported"))
	}
	if source.PVC != nil {
		allErrs = append(allErrs, validatePVCSource(source.PVC, fldPath.Child("pvc"))...)
	}
	return allErrs
}

// checkEndpoint refuses an endpoint the matrix does not support for the content type.
func checkEndpoint(contentType cdi.DataVolumeContentType, endpoint matrix.Endpoint, fldPath *field.Path) field.ErrorList {
	if matrix.EndpointSupported(matrix.ContentType(contentType), endpoint) {
		return nil
	}
	return field.ErrorList{field.Forbidden(fldPath, fmt.Sprintf("contentType %s cannot be imported from %s (see the supported operations matrix)", contentType, endpoint))}
}

func validateHTTP(h *cdi.DataVolumeSourceHTTP, contentType cdi.DataVolumeContentType, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	allErrs = append(allErrs, validateURL(h.URL, fldPath, "http", "https")...)
	if h.SecretRef != "" {
		allErrs = append(allErrs, validateObjectName(h.SecretRef, fldPath.Child("secretRef"))...)
	}
	if h.CertConfigMap != "" {
		allErrs = append(allErrs, validateObjectName(h.CertConfigMap, fldPath.Child("certConfigMap"))...)
	}
	for i, name := range h.SecretExtraHeaders {
		allErrs = append(allErrs, validateObjectName(name, fldPath.Child("secretExtraHeaders").Index(i))...)
	}
	for i, header := range h.ExtraHeaders {
		if name, _, ok := strings.Cut(header, ":"); !ok || strings.TrimSpace(name) == "" {
			allErrs = append(allErrs, field.Invalid(fldPath.Child("extraHeaders").Index(i), header, `must be "Name: value"`))
		}
	}
	if h.Checksum != "" {
		allErrs = append(allErrs, validateChecksum(h.Checksum, fldPath.Child("checksum"))...)
	}
	if endpoint := plan.HTTPEndpoint(h); endpoint != "" {
		allErrs = append(allErrs, checkEndpoint(contentType, endpoint, fldPath)...)
	}
	return allErrs
}

func validateRegistry(r *cdi.DataVolumeSourceRegistry, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	allErrs = append(allErrs, validateURL(r.URL, fldPath, "docker", "oci-archive")...)
	switch r.PullMethod {
	case "", cdi.RegistryPullPod, cdi.RegistryPullNode:
	default:
		allErrs = append(allErrs, field.NotSupported(fldPath.Child("pullMethod"), r.PullMethod,
			[]string{string(cdi.RegistryPullPod), string(cdi.RegistryPullNode)}))
	}
	if r.SecretRef != "" {
		allErrs = append(allErrs, validateObjectName(r.SecretRef, fldPath.Child("secretRef"))...)
	}
	if r.CertConfigMap != "" {
		allErrs = append(allErrs, validateObjectName(r.CertConfigMap, fldPath.Child("certConfigMap"))...)
	}
	return allErrs
}

func validatePVCSource(p *cdi.DataVolumeSourcePVC, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	if p.Name == "" {
		allErrs = append(allErrs, field.Required(fldPath.Child("name"), "the source claim's name"))
	} else {
		allErrs = append(allErrs, validateObjectName(p.Name, fldPath.Child("name"))...)
	}
	// An empty namespace means the DataVolume's own.
	if p.Namespace != "" {
		for _, msg := range apimachineryvalidation.ValidateNamespaceName(p.Namespace, false) {
			allErrs = append(allErrs, field.Invalid(fldPath.Child("namespace"), p.Namespace, msg))
		}
	}
	return allErrs
}

func validateObjectName(name string, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	for _, msg := range apimachineryvalidation.NameIsDNSSubdomain(name, false) {
		allErrs = append(allErrs, field.Invalid(fldPath, name, msg))
	}
	return allErrs
}

// validateURL checks the url of the source at fldPath: one of the schemes,
// and no credentials in it. Credentials go in the Secret named by the
// source's secretRef: in the URL they would be stored, shown to whoever may
// read the DataVolume and written to the audit log. An error shows the URL
// redacted (pkg/redact), never its user information or query string.
func validateURL(raw string, fldPath *field.Path, schemes ...string) field.ErrorList {
	urlPath := fldPath.Child("url")
	u, err := parseURL(raw, schemes...)
	switch {
	case err != nil:
		var shown any = redact.URL(raw)
		if shown == redact.Unparsable {
			shown = field.OmitValueType{} // nothing of it can be shown safely
		}
		return field.ErrorList{field.Invalid(urlPath, shown, err.Error())}
	case u.User != nil:
		return field.ErrorList{field.Invalid(urlPath, redact.ParsedURL(u), fmt.Sprintf(
			"must not carry credentials (user:password@): put them in a Secret (keys accessKeyId and secretKey) "+
				"in the DataVolume's namespace and name it in %s", fldPath.Child("secretRef")))}
	}
	return nil
}

// parseURL checks that raw is an absolute URL with one of the schemes and,
// except for oci-archive (a path), a host.
func parseURL(raw string, schemes ...string) (*url.URL, error) {
	if raw == "" {
		return nil, fmt.Errorf("must be a %s URL", strings.Join(schemes, " or "))
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("not a URL: %v", errorWithoutURL(err))
	}
	if !sets.New(schemes...).Has(u.Scheme) {
		return nil, fmt.Errorf("scheme must be %s", strings.Join(schemes, " or "))
	}
	if u.Scheme != "oci-archive" && u.Host == "" {
		return nil, fmt.Errorf("must name a host")
	}
	if u.Scheme == "oci-archive" && u.Host == "" && u.Path == "" {
		return nil, fmt.Errorf("must name an archive path")
	}
	return u, nil
}

// errorWithoutURL keeps a url.Error's cause but not the URL: the URL is
// already the error's value, and it may carry credentials.
func errorWithoutURL(err error) error {
	if ue, ok := err.(*url.Error); ok {
		return ue.Err
	}
	return err
}

func validateChecksum(checksum string, fldPath *field.Path) field.ErrorList {
	algo, digest, ok := strings.Cut(checksum, ":")
	want, known := checksumHexLen[algo]
	switch {
	case !ok || !known:
		return field.ErrorList{field.Invalid(fldPath, checksum, "must be algorithm:hex with algorithm md5, sha1, sha256 or sha512")}
	case len(digest) != want:
		return field.ErrorList{field.Invalid(fldPath, checksum, fmt.Sprintf("a %s digest has %d hex digits, not %d", algo, want, len(digest)))}
	}
	if _, err := hex.DecodeString(digest); err != nil {
		return field.ErrorList{field.Invalid(fldPath, checksum, "digest must be hexadecimal")}
	}
	return nil
}

func validateClaim(target *plan.Target, sizeOptional bool, contentType cdi.DataVolumeContentType) field.ErrorList {
	var allErrs field.ErrorList
	// spec.pvc is a claim's spec as written; spec.storage may leave its
	// access modes to the defaults.
	if !target.Storage && len(target.AccessModes) == 0 {
		allErrs = append(allErrs, field.Required(target.Path.Child("accessModes"), "at least one access mode"))
	}
	supportedModes := sets.New(corev1.ReadWriteOnce, corev1.ReadOnlyMany, corev1.ReadWriteMany, corev1.ReadWriteOncePod)
	for i, mode := range target.AccessModes {
		if !supportedModes.Has(mode) {
			allErrs = append(allErrs, field.NotSupported(target.Path.Child("accessModes").Index(i), mode, sets.List(supportedModes)))
		}
	}

	switch size := target.Size; {
	case size == nil && !sizeOptional:
		allErrs = append(allErrs, field.Required(target.SizePath(), "the size of the volume"))
	case size != nil && size.Sign() <= 0:
		allErrs = append(allErrs, field.Invalid(target.SizePath(), size.String(), "must be greater than zero"))
	}

	if target.VolumeModeSet {
		switch target.VolumeMode {
		case corev1.PersistentVolumeFilesystem:
		case corev1.PersistentVolumeBlock:
			if !matrix.BlockAllowed(matrix.ContentType(contentType)) {
				allErrs = append(allErrs, field.Forbidden(target.Path.Child("volumeMode"), "contentType archive needs a Filesystem volume to extract into; Block is not supported"))
			}
		default:
			allErrs = append(allErrs, field.NotSupported(target.Path.Child("volumeMode"), target.VolumeMode,
				[]string{string(corev1.PersistentVolumeFilesystem), string(corev1.PersistentVolumeBlock)}))
		}
	}
	return allErrs
}

func validateSpecUnchanged(spec, old *cdi.DataVolumeSpec, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	immutable := func(name string, a, b interface{}) {
		if !apiequality.Semantic.DeepEqual(a, b) {
			allErrs = append(allErrs, field.Forbidden(fldPath.Child(name), "the spec of a DataVolume is immutable; create a new DataVolume instead"))
		}
	}
	immutable("source", spec.Source, old.Source)
	immutable("pvc", spec.PVC, old.PVC)
	immutable("storage", spec.Storage, old.Storage)
	immutable("priorityClassName", spec.PriorityClassName, old.PriorityClassName)
	immutable("contentType", spec.ContentType, old.ContentType)
	immutable("preallocation", spec.Preallocation, old.Preallocation)
	return allErrs
}

// validPhases are the phases a status may carry.
var validPhases = sets.New(cdi.PhaseUnset, cdi.Pending, cdi.WaitForFirstConsumer, cdi.PVCBound, cdi.ImportScheduled, cdi.ImportInProgress,
	cdi.CloneScheduled, cdi.CloneInProgress, cdi.UploadScheduled, cdi.UploadReady, cdi.Succeeded, cdi.Failed, cdi.Paused, cdi.Unknown)

// ValidateDataVolumeStatus validates the status a controller writes.
func ValidateDataVolumeStatus(status *cdi.DataVolumeStatus, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	if !validPhases.Has(status.Phase) {
		allErrs = append(allErrs, field.NotSupported(fldPath.Child("phase"), status.Phase, sets.List(validPhases)))
	}
	if status.RestartCount < 0 {
		allErrs = append(allErrs, field.Invalid(fldPath.Child("restartCount"), status.RestartCount, "must not be negative"))
	}
	if p := string(status.Progress); p != "" && p != string(cdi.ProgressNotAvailable) {
		var pct float64
		if _, err := fmt.Sscanf(p, "%f%%", &pct); err != nil || !strings.HasSuffix(p, "%") || pct < 0 || pct > 100 {
			allErrs = append(allErrs, field.Invalid(fldPath.Child("progress"), p, `must be "N/A" or a percentage from 0% to 100%`))
		}
	}
	seen := sets.New[cdi.DataVolumeConditionType]()
	for i, c := range status.Conditions {
		p := fldPath.Child("conditions").Index(i)
		if seen.Has(c.Type) {
			allErrs = append(allErrs, field.Duplicate(p.Child("type"), c.Type))
		}
		seen.Insert(c.Type)
		switch c.Status {
		case corev1.ConditionTrue, corev1.ConditionFalse, corev1.ConditionUnknown:
		default:
			allErrs = append(allErrs, field.NotSupported(p.Child("status"), c.Status,
				[]string{string(corev1.ConditionTrue), string(corev1.ConditionFalse), string(corev1.ConditionUnknown)}))
		}
	}
	return allErrs
}
