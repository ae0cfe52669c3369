package datavolume

import (
	"context"
	"fmt"
	"strings"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/datavolume/datavolume/pkg/apis/cdi"
	"github.com/datavolume/datavolume/pkg/apis/cdi/matrix"
	"github.com/datavolume/datavolume/pkg/apis/cdi/validation"
	"github.com/datavolume/datavolume/pkg/plan"
)

// Rules checks DataVolume specs against the static rules and the cluster.
type Rules struct {
	Lookups
	// FilesystemOverhead is counted when a Block source is cloned into a
	// Filesystem target.
	FilesystemOverhead plan.FilesystemOverhead
}

// Verdict is what the rules found in one spec: errors refuse it, warnings
// are shown to the user (prefixed with the field they are about).
type Verdict struct {
	Errors   field.ErrorList
	Warnings []string
}

// Check runs every rule on a spec of a DataVolume in namespace; fldPath is
// where the spec sits in the admitted object. The error is a failed lookup.
// It reads a clone's source claim: call it only for a requester already
// allowed to clone it (see CheckSource).
func (r *Rules) Check(ctx context.Context, namespace string, spec *cdi.DataVolumeSpec, fldPath *field.Path) (Verdict, error) {
	verdict, err := r.CheckSource(ctx, namespace, spec, fldPath)
	if err != nil {
		return Verdict{}, err
	}
	verdict.Errors = append(validation.ValidateDataVolumeSpec(spec, fldPath), verdict.Errors...)
	return verdict, nil
}

// CheckSource runs the rules that read a clone's source claim: whether it
// exists, its size and volume mode, and the pods using it. What it reports
// describes the claim, so it may only run once the requester is known to be
// allowed to clone it; a refused requester learns nothing of the source.
// A spec that is not a clone passes.
func (r *Rules) CheckSource(ctx context.Context, namespace string, spec *cdi.DataVolumeSpec, fldPath *field.Path) (Verdict, error) {
	var verdict Verdict
	p := plan.At(namespace, spec, fldPath)
	target := p.Target
	if !p.IsClone() || target == nil {
		return verdict, nil
	}
	source, err := r.sourceClaim(p.CloneSource.Namespace, p.CloneSource.Name)
	if err != nil {
		return Verdict{}, err
	}
	sourcePath := fldPath.Child("source", "pvc")
	if source == nil {
		verdict.Warnings = append(verdict.Warnings, fmt.Sprintf(
			"%s: the source PersistentVolumeClaim %q does not exist yet; the clone waits until it does",
			sourcePath, p.CloneSource.String()))
		return verdict, nil
	}
	logr.FromContextOrDiscard(ctx).V(4).Info("Checking clone against its source",
		"source", source.String(), "sourceSize", source.Size.String(), "sourceMode", source.Mode, "targetMode", target.VolumeMode)
	usedBy, err := r.podsUsing(source.Namespace, source.Name)
	if err != nil {
		return Verdict{}, err
	}
	if len(usedBy) > 0 {
		verdict.Warnings = append(verdict.Warnings, fmt.Sprintf(
			"%s: the source PersistentVolumeClaim %q is in use by pod %s; the clone waits until it is released (power off the VM using it)",
			sourcePath, source, strings.Join(usedBy, ", ")))
	}
	verdict.Errors = append(verdict.Errors, checkVolumeMode(p.ContentType, source, target)...)
	verdict.Errors = append(verdict.Errors, r.checkSize(source, target)...)
	return verdict, nil
}

// checkVolumeMode refuses an archive that would cross volume modes: it is a
// filesystem's files, not a disk image a device can hold. (An archive into
// a Block target is already refused by the static rules.)
func checkVolumeMode(contentType cdi.DataVolumeContentType, source *sourceClaim, target *plan.Target) field.ErrorList {
	if matrix.BlockAllowed(matrix.ContentType(contentType)) || source.Mode == target.VolumeMode || target.VolumeMode == corev1.PersistentVolumeBlock {
		return nil
	}
	return field.ErrorList{field.Invalid(target.Path.Child("volumeMode"), string(target.VolumeMode), fmt.Sprintf(
		"contentType %s cannot be cloned across volume modes: the source PersistentVolumeClaim %q is %s",
		contentType, source, source.Mode))}
}

// checkSize refuses a target smaller than what the source needs.
func (r *Rules) checkSize(source *sourceClaim, target *plan.Target) field.ErrorList {
	if target.Size == nil || source.Size.IsZero() {
		// A storage size left out is filled by the mutation (or the
		// controller) from the source; a source without a size has nothing
		// to compare.
		return nil
	}
	required, inflated := plan.RequiredTargetSize(source.Size, source.Mode, target.VolumeMode, r.FilesystemOverhead)
	if !smallerThan(*target.Size, required) {
		return nil
	}
	detail := fmt.Sprintf("must be at least the size of the source PersistentVolumeClaim %q (%s)", source, source.Size.String())
	if inflated {
		detail = fmt.Sprintf("must be at least %s: the source PersistentVolumeClaim %q is a Block volume of %s, and a Filesystem volume loses %s of its size to filesystem overhead",
			required.String(), source, source.Size.String(), r.FilesystemOverhead)
	}
	return field.ErrorList{field.Invalid(target.SizePath(), target.Size.String(), detail)}
}

// maxClaimBytes is beyond any claim (4 EiB).
const maxClaimBytes = 1 << 62

// smallerThan compares a requested size with a claim's. Sizes no claim can
// have are decided without exact arithmetic: comparing a quantity like
// 1e10000000 rescales a decimal to millions of digits and takes seconds.
func smallerThan(size, claim resource.Quantity) bool {
	switch approx := size.AsApproximateFloat64(); {
	case approx < 1:
		return true
	case approx >= maxClaimBytes:
		return false
	default:
		return size.Cmp(claim) < 0
	}
}
