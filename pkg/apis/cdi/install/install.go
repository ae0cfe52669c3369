// Package install registers every version of cdi.kubevirt.io in a scheme.
package install

import (
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"

	"github.com/datavolume/datavolume/pkg/apis/cdi"
	"github.com/datavolume/datavolume/pkg/apis/cdi/v1alpha1"
	"github.com/datavolume/datavolume/pkg/apis/cdi/v1beta1"
)

// Install registers the group's internal and versioned types, with v1beta1
// preferred (it is also the storage version).
func Install(scheme *runtime.Scheme) {
	utilruntime.Must(cdi.AddToScheme(scheme))
	utilruntime.Must(v1beta1.AddToScheme(scheme))
	utilruntime.Must(v1alpha1.AddToScheme(scheme))
	utilruntime.Must(scheme.SetVersionPriority(v1beta1.SchemeGroupVersion, v1alpha1.SchemeGroupVersion))
}
