package datavolume

import (
	"math"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// mebibyte is the alignment CDI gives disk images.
const mebibyte = 1 << 20

// requiredTargetSize is the smallest target that holds a copy of a source of
// the given size and mode. Only a Block source going to a Filesystem target
// grows: the image is the whole device, and the filesystem keeps its
// overhead. As in CDI, the image is aligned to 1 MiB first; the result is
// rounded up to a whole MiB so the message reads "2168Mi", not bytes.
// inflated says whether the overhead was counted.
func requiredTargetSize(source resource.Quantity, sourceMode, targetMode corev1.PersistentVolumeMode, overhead FilesystemOverhead) (required resource.Quantity, inflated bool) {
	if sourceMode != corev1.PersistentVolumeBlock || targetMode != corev1.PersistentVolumeFilesystem || overhead == 0 {
		return source, false
	}
	aligned := roundUp(source.Value(), mebibyte)
	withOverhead := int64(math.Ceil(float64(aligned) / (1 - float64(overhead))))
	return *resource.NewQuantity(roundUp(withOverhead, mebibyte), resource.BinarySI), true
}

func roundUp(n, multiple int64) int64 {
	if rem := n % multiple; rem != 0 {
		return n + multiple - rem
	}
	return n
}
