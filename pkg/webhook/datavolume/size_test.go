package datavolume

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
		{"block to filesystem adds the overhead, in whole MiB", "2Gi", block, fs, 0.055, "2168Mi", true},
		{"block to filesystem with no overhead keeps the size", "2Gi", block, fs, 0, "2Gi", false},
		{"an unaligned source is aligned to 1MiB first", "1000000000", block, fs, 0.055, "1010Mi", true},
		{"a decimal source", "1G", block, fs, 0.1, "1060Mi", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, inflated := requiredTargetSize(resource.MustParse(tt.source), tt.sourceMode, tt.targetMode, tt.overhead)
			assert.Equal(t, got.String(), tt.want)
			assert.Equal(t, inflated, tt.wantInflated)
		})
	}
}

func TestFilesystemOverheadValidate(t *testing.T) {
	for _, ok := range []FilesystemOverhead{0, 0.055, 0.5, 0.999} {
		assert.NilError(t, ok.Validate(), "%v", ok)
	}
	for _, bad := range []FilesystemOverhead{-0.01, 1, 1.5} {
		assert.ErrorContains(t, bad.Validate(), "must be at least 0 and less than 1")
	}
	assert.Equal(t, DefaultFilesystemOverhead.String(), "5.5%")
}

func TestSmallerThanDecidesHugeQuantitiesQuickly(t *testing.T) {
	claim := resource.MustParse("2Gi")
	tests := []struct {
		size string
		want bool
	}{
		{"1Gi", true},
		{"2Gi", false},
		{"2049Mi", false},
		{"1e10000000", false},
		{"1e-9", true},
		{"500m", true},
	}
	for _, tt := range tests {
		t.Run(tt.size, func(t *testing.T) {
			assert.Equal(t, smallerThan(resource.MustParse(tt.size), claim), tt.want)
		})
	}
}
