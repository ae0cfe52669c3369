package datavolume

import (
	"fmt"

	"github.com/datavolume/datavolume/pkg/apis/cdi"
	"github.com/datavolume/datavolume/pkg/webhook/admission"
)

// dataVolumesResource is the resource the handlers admit.
const dataVolumesResource = "datavolumes"

// checkResource refuses a request for anything but datavolumes: a webhook
// configuration sending something else is a mistake to surface, not admit.
func checkResource(req admission.Request) error {
	if req.Resource.Group != cdi.GroupName || req.Resource.Resource != dataVolumesResource {
		return fmt.Errorf("this endpoint admits %s.%s, not %s.%s", dataVolumesResource, cdi.GroupName, req.Resource.Resource, req.Resource.Group)
	}
	return nil
}

// namespaceOf is the namespace the DataVolume is created in.
func namespaceOf(req admission.Request, dv *cdi.DataVolume) string {
	if req.Namespace != "" {
		return req.Namespace
	}
	return dv.Namespace
}

// nameOf is the DataVolume's name, or its generateName prefix.
func nameOf(req admission.Request, dv *cdi.DataVolume) string {
	switch {
	case dv.Name != "":
		return dv.Name
	case req.Name != "":
		return req.Name
	default:
		return dv.GenerateName
	}
}
