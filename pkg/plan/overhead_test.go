package plan

import (
	"testing"

	"gotest.tools/v3/assert"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

func TestRequiredTargetSize(t *testing.T) {
	fs, block := corev1.PersistentVolumeFilesystem, corev1.PersistentVolumeBlock
	tests := []struct {
		name             string
		source           string
		sourceMode, mode corev1.PersistentVolumeMode
		want             string
		inflated         bool
	}{
		{"filesystem to filesystem", "10Gi", fs, fs, "10Gi", false},
		{"block to block", "10Gi", block, block, "10Gi", false},
		{"filesystem to block", "10Gi", fs, block, "10Gi", false},
		// 2 GiB / 0.945 = 2167.2 MiB, rounded up to 2168 MiB.
		{"block to filesystem", "2Gi", block, fs, "2168Mi", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, inflated := RequiredTargetSize(resource.MustParse(tt.source), tt.sourceMode, tt.mode, DefaultFilesystemOverhead)
			assert.Equal(t, got.String(), tt.want)
			assert.Equal(t, inflated, tt.inflated)
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
	assert.NilError(t, FilesystemOverhead(0).Validate())
	assert.NilError(t, DefaultFilesystemOverhead.Validate())
	assert.ErrorContains(t, FilesystemOverhead(1).Validate(), "less than 1")
	assert.ErrorContains(t, FilesystemOverhead(-0.1).Validate(), "at least 0")
	assert.Equal(t, DefaultFilesystemOverhead.String(), "5.5%")
}
