package apiserver

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"

	"github.com/datavolume/datavolume/pkg/apis/cdi/install"
)

var (
	// Scheme holds every version of cdi.kubevirt.io and the meta types the
	// server needs to answer requests.
	Scheme = runtime.NewScheme()
	// Codecs encodes and decodes with Scheme.
	Codecs = serializer.NewCodecFactory(Scheme)
)

// withoutProtobuf is the DataVolume group's serializer: JSON and YAML only.
// The DataVolume types have no protobuf encoding, and kube-controller-
// manager's namespace deleter asks for protobuf first; offered, it fails on
// every DataVolumeList and leaves every namespace of the cluster
// Terminating (kubernetes/kubernetes#86666). Not offered, it gets JSON.
type withoutProtobuf struct{ serializer.CodecFactory }

func (s withoutProtobuf) SupportedMediaTypes() []runtime.SerializerInfo {
	var infos []runtime.SerializerInfo
	for _, info := range s.CodecFactory.SupportedMediaTypes() {
		if info.MediaType != runtime.ContentTypeProtobuf {
			infos = append(infos, info)
		}
	}
	return infos
}

func init() {
	install.Install(Scheme)
	// Options types (ListOptions, DeleteOptions, ...) and Status live in the
	// unversioned meta group.
	metav1.AddToGroupVersion(Scheme, schema.GroupVersion{Version: "v1"})
	unversioned := schema.GroupVersion{Group: "", Version: "v1"}
	Scheme.AddUnversionedTypes(unversioned,
		&metav1.Status{},
		&metav1.APIVersions{},
		&metav1.APIGroupList{},
		&metav1.APIGroup{},
		&metav1.APIResourceList{},
	)
}
