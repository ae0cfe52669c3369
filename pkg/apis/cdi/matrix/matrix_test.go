package matrix

import (
	"testing"

	"gotest.tools/v3/assert"
)

func TestSupportedFormats(t *testing.T) {
	tests := []struct {
		image    Image
		endpoint Endpoint
		format   Format
		scratch  Scratch
		ok       bool
	}{
		{ImageQCOW2, EndpointHTTP, FormatQCOW2, ScratchNone, true},
		{ImageQCOW2, EndpointHTTP, FormatGZ, ScratchAlways, true},
		{ImageQCOW2, EndpointHTTPS, FormatQCOW2, ScratchCustomCA, true},
		{ImageQCOW2, EndpointRegistry, FormatQCOW2, ScratchAlways, true},
		{ImageQCOW2, EndpointRegistry, FormatGZ, "", false},
		{ImageQCOW2, EndpointRegistry, FormatXZ, "", false},
		{ImageRAW, EndpointHTTPBasicAuth, FormatXZ, ScratchNone, true},
		{ImageRAW, EndpointRegistry, FormatRAW, ScratchAlways, true},
		{ImageRAW, EndpointUpload, FormatGZ, ScratchAlways, true},
		{ImageArchive, EndpointHTTPS, FormatTAR, ScratchNone, true},
		{ImageArchive, EndpointRegistry, FormatTAR, "", false},
		{ImageArchive, EndpointUpload, FormatTAR, "", false},
	}
	for _, tc := range tests {
		scratch, ok := Supported(tc.image, tc.endpoint, tc.format)
		assert.Check(t, ok == tc.ok && scratch == tc.scratch, "%s %s %s: got %q %v", tc.image, tc.endpoint, tc.format, scratch, ok)
	}
}

// What each content type may do from each endpoint, decided before a byte
// is read: the questions validation, the plan and the cloner ask.
func TestEndpointRules(t *testing.T) {
	type row struct{ supported, compressed, staged bool }
	tests := map[ContentType]map[Endpoint]row{
		KubeVirt: {
			EndpointHTTP:          {supported: true, compressed: true},
			EndpointHTTPS:         {supported: true, compressed: true},
			EndpointHTTPBasicAuth: {supported: true, compressed: true},
			EndpointRegistry:      {supported: true, staged: true},
			EndpointUpload:        {supported: true, compressed: true, staged: true},
		},
		Archive: {
			EndpointHTTP:          {supported: true},
			EndpointHTTPS:         {supported: true},
			EndpointHTTPBasicAuth: {supported: true},
			EndpointRegistry:      {},
			EndpointUpload:        {},
		},
	}
	for contentType, endpoints := range tests {
		for endpoint, want := range endpoints {
			got := row{
				supported:  EndpointSupported(contentType, endpoint),
				compressed: CompressedSupported(contentType, endpoint),
				staged:     AlwaysStaged(contentType, endpoint),
			}
			assert.Check(t, got == want, "%s from %s: got %+v, want %+v", contentType, endpoint, got, want)
		}
	}
	assert.Assert(t, BlockAllowed(KubeVirt))
	assert.Assert(t, !BlockAllowed(Archive))
}
