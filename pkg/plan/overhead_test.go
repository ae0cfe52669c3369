package plan

import (
	"testing"

	"gotest.tools/v3/assert"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

func TestRequiredTargetSize(t *testing.T) {
	const (
		block = corev1.PersistentVolumeBlock
		fs    = corev1.PersistentVolumeFilesystem
	)
	tests := []struct {
		name                   string
		source                 string
		sourceMode, targetMode corev1.PersistentVolumeMode
		overhead               FilesystemOverhead
		want                   string
		wantInflated           bool
	}{
		{"filesystem to filesystem keeps the size", "2Gi", fs, fs, 0.055, "2Gi", false},
		{"block to block keeps the size", "2Gi", block, block, 0.055, "2Gi", false},
		{"filesystem to block keeps the size", "2Gi", fs, block, 0.055, "2Gi", false},
		// 2 GiB / 0.945 = 2167.2 MiB, rounded up to 2168 MiB.
		{"block to filesystem adds the overhead, in whole MiB", "2Gi", block, fs, 0.055, "2168Mi", true},
		{"block to filesystem with no overhead keeps the size", "2Gi", block, fs, 0, "2Gi", false},
		{"an unaligned source is aligned to 1MiB first", "1000000000", block, fs, 0.055, "1010Mi", true},
		{"a decimal source", "1G", block, fs, 0.1, "1060Mi", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, inflated := RequiredTargetSize(resource.MustParse(tt.source), tt.sourceMode, tt.targetMode, tt.overhead)
			assert.Equal(t, got.String(), tt.want)
			assert.Equal(t, inflated, tt.wantInflated)
		})
	}
}

func TestUsableSizeHoldsWhatStorageAskedFor(t *testing.T) {
	for _, size := range []int64{1, Mebibyte, 512 * Mebibyte, 10 << 30, 10<<30 + 12345} {
		claim := WithOverhead(size, DefaultFilesystemOverhead)
		usable := UsableSize(claim, corev1.PersistentVolumeFilesystem, DefaultFilesystemOverhead)
		assert.Assert(t, usable >= size, "claim %d for %d leaves %d usable", claim, size, usable)
		assert.Equal(t, usable%Mebibyte, int64(0))
	}
	assert.Equal(t, UsableSize(10<<30, corev1.PersistentVolumeBlock, DefaultFilesystemOverhead), int64(10<<30))
	// 1 GiB × 0.945 = 967.68 MiB, aligned down.
	assert.Equal(t, UsableSize(1<<30, corev1.PersistentVolumeFilesystem, DefaultFilesystemOverhead), int64(967*Mebibyte))
}

func TestOverheadValidate(t *testing.T) {
	for _, ok := range []FilesystemOverhead{0, 0.055, 0.5, 0.999} {
		assert.NilError(t, ok.Validate(), "%v", ok)
	}
	for _, bad := range []FilesystemOverhead{-0.01, 1, 1.5} {
		assert.ErrorContains(t, bad.Validate(), "must be at least 0 and less than 1")
	}
	assert.Equal(t, DefaultFilesystemOverhead.String(), "5.5%")
}
