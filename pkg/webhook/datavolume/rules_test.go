package datavolume

import (
	"testing"

	"gotest.tools/v3/assert"
	"k8s.io/apimachinery/pkg/api/resource"
)

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
