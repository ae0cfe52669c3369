package cloneauth

import (
	"fmt"

	authorizationv1 "k8s.io/api/authorization/v1"
	"k8s.io/apiserver/pkg/authentication/user"
)

// permission is one permission in the source namespace that allows a
// cross-namespace clone.
type permission struct {
	via        string
	attributes authorizationv1.ResourceAttributes
}

// permissionsFor lists, in the order asked, the permissions that allow req:
// datavolumes/source on the claim itself, then "create pods", since whoever
// may run a pod in the source namespace can mount the claim anyway.
func permissionsFor(req Request) []permission {
	return []permission{
		{
			via: ViaDataVolumesSource,
			attributes: authorizationv1.ResourceAttributes{
				Namespace:   req.SourceNamespace,
				Verb:        "create",
				Group:       DataVolumesGroup,
				Resource:    DataVolumesResource,
				Subresource: SourceSubresource,
				Name:        req.SourceName,
			},
		},
		{
			via: ViaPods,
			attributes: authorizationv1.ResourceAttributes{
				Namespace: req.SourceNamespace,
				Verb:      "create",
				Resource:  "pods",
			},
		},
	}
}

// describe spells a permission the way an administrator writes it:
// create cdi.kubevirt.io/datavolumes/source "disk" in namespace "src".
func describe(a authorizationv1.ResourceAttributes) string {
	resource := a.Resource
	if a.Group != "" {
		resource = a.Group + "/" + resource
	}
	if a.Subresource != "" {
		resource += "/" + a.Subresource
	}
	text := a.Verb + " " + resource
	if a.Name != "" {
		text += fmt.Sprintf(" %q", a.Name)
	}
	return text + fmt.Sprintf(" in namespace %q", a.Namespace)
}

// subjectAccessReview asks whether u, exactly as authenticated, holds the
// permission.
func subjectAccessReview(u user.Info, attributes authorizationv1.ResourceAttributes) *authorizationv1.SubjectAccessReview {
	return &authorizationv1.SubjectAccessReview{
		Spec: authorizationv1.SubjectAccessReviewSpec{
			ResourceAttributes: &attributes,
			User:               u.GetName(),
			UID:                u.GetUID(),
			Groups:             u.GetGroups(),
			Extra:              extraOf(u),
		},
	}
}

func extraOf(u user.Info) map[string]authorizationv1.ExtraValue {
	extra := u.GetExtra()
	if len(extra) == 0 {
		return nil
	}
	converted := make(map[string]authorizationv1.ExtraValue, len(extra))
	for key, values := range extra {
		converted[key] = authorizationv1.ExtraValue(values)
	}
	return converted
}
