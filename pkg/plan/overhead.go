package plan

import (
	"fmt"
	"math"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// FilesystemOverhead is the share of a Filesystem volume that the
// filesystem itself takes, so a disk image never gets it: a Block source of
// size S needs a Filesystem target of S / (1 - overhead), and a disk image
// in a Filesystem claim of capacity C gets C × (1 - overhead).
type FilesystemOverhead float64

// DefaultFilesystemOverhead is CDI's default (5.5%).
const DefaultFilesystemOverhead FilesystemOverhead = 0.055

// Mebibyte is the alignment CDI gives disk images.
const Mebibyte = 1 << 20

// Validate accepts a share from 0 (no overhead) up to, not including, 1.
func (o FilesystemOverhead) Validate() error {
	if math.IsNaN(float64(o)) || o < 0 || o >= 1 {
		return fmt.Errorf("filesystem overhead %v must be at least 0 and less than 1", float64(o))
	}
	return nil
}

// String is the overhead as a percentage, e.g. "5.5%".
func (o FilesystemOverhead) String() string {
	return fmt.Sprintf("%g%%", float64(o)*100)
}

// RequiredTargetSize is the smallest target that holds a copy of a source of
// the given size and mode. Only a Block source going to a Filesystem target
// grows: the image is the whole device, and the filesystem keeps its
// overhead. As in CDI, the image is aligned to 1 MiB first; the result is
// rounded up to a whole MiB so a message reads "2168Mi", not bytes.
// inflated says whether the overhead was counted.
func RequiredTargetSize(source resource.Quantity, sourceMode, targetMode corev1.PersistentVolumeMode, overhead FilesystemOverhead) (required resource.Quantity, inflated bool) {
	if sourceMode != corev1.PersistentVolumeBlock || targetMode != corev1.PersistentVolumeFilesystem || overhead == 0 {
		return source, false
	}
	return *resource.NewQuantity(WithOverhead(source.Value(), overhead), resource.BinarySI), true
}

// WithOverhead is the Filesystem claim size whose usable space holds an
// image of size bytes: size aligned up to 1 MiB, divided by (1 - overhead),
// rounded up to 1 MiB. spec.storage asks for this, as CDI's storage API does.
func WithOverhead(size int64, overhead FilesystemOverhead) int64 {
	aligned := roundUp(size, Mebibyte)
	return roundUp(int64(math.Ceil(float64(aligned)/(1-float64(overhead)))), Mebibyte)
}

// UsableSize is how large a disk image may be in a volume of capacity bytes:
// all of a Block device; (1 - overhead) of a Filesystem volume, aligned down
// to 1 MiB as CDI sizes images.
func UsableSize(capacity int64, mode corev1.PersistentVolumeMode, overhead FilesystemOverhead) int64 {
	if mode == corev1.PersistentVolumeBlock {
		return capacity
	}
	usable := int64(math.Floor(float64(capacity) * (1 - float64(overhead))))
	return usable - usable%Mebibyte
}

func roundUp(n, multiple int64) int64 {
	if rem := n % multiple; rem != 0 {
		return n + multiple - rem
	}
	return n
}
