// +k8s:openapi-gen=true
// +k8s:deepcopy-gen=package
// +k8s:conversion-gen=github.com/datavolume/datavolume/pkg/apis/cdi
// +k8s:defaulter-gen=TypeMeta
// +groupName=cdi.kubevirt.io
// +k8s:openapi-model-package=io.kubevirt.cdi.v1beta1

// Package v1beta1 is the storage and preferred version of cdi.kubevirt.io.
package v1beta1
