package apiserver

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/endpoints/handlers/negotiation"

	"github.com/datavolume/datavolume/pkg/apis/cdi/v1beta1"
)

// kube-controller-manager's metadata client lists protobuf first; the
// DataVolume group must answer it in JSON, which DataVolumeList can be
// encoded in.
func TestNamespaceDeleterGetsJSON(t *testing.T) {
	s := withoutProtobuf{Codecs}
	for _, info := range s.SupportedMediaTypes() {
		assert.Check(t, info.MediaType != runtime.ContentTypeProtobuf)
	}
	accept := "application/vnd.kubernetes.protobuf;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
	_, info, err := negotiation.NegotiateOutputMediaType(requestAccepting(accept), s, negotiation.DefaultEndpointRestrictions)
	assert.NilError(t, err)
	assert.Check(t, is.Equal(info.MediaType, runtime.ContentTypeJSON))

	// What the full codec factory would have picked, and cannot encode.
	_, info, err = negotiation.NegotiateOutputMediaType(requestAccepting("application/vnd.kubernetes.protobuf,application/json"), Codecs, negotiation.DefaultEndpointRestrictions)
	assert.NilError(t, err)
	assert.Check(t, is.Equal(info.MediaType, runtime.ContentTypeProtobuf))
	encoder := Codecs.EncoderForVersion(info.Serializer, v1beta1.SchemeGroupVersion)
	_, err = runtime.Encode(encoder, &v1beta1.DataVolumeList{})
	assert.Check(t, is.ErrorContains(err, "does not implement the protobuf marshalling interface"))
	_, info, err = negotiation.NegotiateOutputMediaType(requestAccepting("application/vnd.kubernetes.protobuf,application/json"), s, negotiation.DefaultEndpointRestrictions)
	assert.NilError(t, err)
	encoder = s.EncoderForVersion(info.Serializer, v1beta1.SchemeGroupVersion)
	_, err = runtime.Encode(encoder, &v1beta1.DataVolumeList{})
	assert.NilError(t, err)
}

func requestAccepting(accept string) *http.Request {
	req := httptest.NewRequest(http.MethodGet, "/apis/cdi.kubevirt.io/v1beta1/namespaces/gone/datavolumes", nil)
	req.Header.Set("Accept", accept)
	return req
}
