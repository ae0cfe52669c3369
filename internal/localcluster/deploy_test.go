package localcluster

import (
	"testing"

	"gotest.tools/v3/assert"
)

func TestSplitReference(t *testing.T) {
	for _, tc := range []struct{ ref, name, tag string }{
		{"datavolume.local/coredns:0123456789ab", "datavolume.local/coredns", "0123456789ab"},
		{"localhost:5000/pause", "localhost:5000/pause", "latest"},
		{"localhost:5000/pause:v1", "localhost:5000/pause", "v1"},
	} {
		name, tag := splitReference(tc.ref)
		assert.Equal(t, name, tc.name, tc.ref)
		assert.Equal(t, tag, tc.tag, tc.ref)
	}
}
