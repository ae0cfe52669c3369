// +k8s:openapi-gen=true
// +k8s:deepcopy-gen=package
// +k8s:conversion-gen=github.com/datavolume/datavolume/pkg/apis/cdi
// +k8s:defaulter-gen=TypeMeta
// +groupName=cdi.kubevirt.io
// +k8s:openapi-model-package=io.kubevirt.cdi.v1alpha1

// Package v1alpha1 is a served version of cdi.kubevirt.io with the same fields as
// v1beta1, so conversion between them is lossless.
package v1alpha1
