package v1alpha1

// SetDefaults_DataVolumeSpec fills in the content type (kubevirt, as in CDI)
// and the registry pull method (pod), so stored objects say what will happen.
func SetDefaults_DataVolumeSpec(obj *DataVolumeSpec) { //nolint:revive // name required by defaulter-gen
	if obj.ContentType == "" {
		obj.ContentType = DataVolumeKubeVirt
	}
	if obj.Source != nil && obj.Source.Registry != nil && obj.Source.Registry.PullMethod == "" {
		obj.Source.Registry.PullMethod = RegistryPullPod
	}
}
