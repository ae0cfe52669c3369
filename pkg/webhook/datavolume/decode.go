package datavolume

import (
	"encoding/json"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"

	"github.com/datavolume/datavolume/pkg/apis/cdi"
	"github.com/datavolume/datavolume/pkg/apis/cdi/install"
	"github.com/datavolume/datavolume/pkg/apis/cdi/v1beta1"
)

// Decoder turns DataVolumes of any served version into the internal type,
// defaulted and converted by the group's scheme, as the API server does.
type Decoder struct {
	decoder runtime.Decoder
}

// NewDecoder returns a Decoder over a scheme with every version installed.
func NewDecoder() *Decoder {
	scheme := runtime.NewScheme()
	install.Install(scheme)
	return &Decoder{decoder: serializer.NewCodecFactory(scheme).UniversalDecoder()}
}

// DataVolume decodes an admitted object; kind is the request's, used when
// the object itself does not say its apiVersion and kind.
func (d *Decoder) DataVolume(raw []byte, kind metav1.GroupVersionKind) (*cdi.DataVolume, error) {
	if len(raw) == 0 {
		return nil, fmt.Errorf("the request carries no object")
	}
	defaultGVK := schema.GroupVersionKind(kind)
	obj, _, err := d.decoder.Decode(raw, &defaultGVK, nil)
	if err != nil {
		return nil, fmt.Errorf("decoding the DataVolume: %w", err)
	}
	dv, ok := obj.(*cdi.DataVolume)
	if !ok {
		return nil, fmt.Errorf("expected a DataVolume, decoded a %T", obj)
	}
	return dv, nil
}

// v1beta1Envelope wraps a bare spec so that it decodes as a whole v1beta1
// DataVolume, with its defaults and conversion.
type v1beta1Envelope struct {
	metav1.TypeMeta `json:",inline"`
	Spec            json.RawMessage `json:"spec"`
}

// Spec decodes a bare v1beta1 DataVolumeSpec (a VirtualMachine's
// dataVolumeTemplates carry one; v1alpha3 VMs carry the same JSON).
func (d *Decoder) Spec(raw json.RawMessage) (*cdi.DataVolumeSpec, error) {
	if len(raw) == 0 {
		raw = json.RawMessage("{}")
	}
	envelope, err := json.Marshal(v1beta1Envelope{
		TypeMeta: metav1.TypeMeta{APIVersion: v1beta1.SchemeGroupVersion.String(), Kind: "DataVolume"},
		Spec:     raw,
	})
	if err != nil {
		return nil, fmt.Errorf("wrapping the DataVolume spec: %w", err)
	}
	dv, err := d.DataVolume(envelope, metav1.GroupVersionKind(v1beta1.SchemeGroupVersion.WithKind("DataVolume")))
	if err != nil {
		return nil, err
	}
	return &dv.Spec, nil
}
