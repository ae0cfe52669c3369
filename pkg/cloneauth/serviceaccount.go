package cloneauth

import (
	"k8s.io/apiserver/pkg/authentication/serviceaccount"
	"k8s.io/apiserver/pkg/authentication/user"
)

// ServiceAccountUser is the user a pod running as the service account
// namespace/name authenticates as, for checking what a VirtualMachine may
// clone: its groups are those the token authenticator gives it.
func ServiceAccountUser(namespace, name string) user.Info {
	return &user.DefaultInfo{
		Name:   serviceaccount.MakeUsername(namespace, name),
		Groups: append(serviceaccount.MakeGroupNames(namespace), user.AllAuthenticated),
	}
}

// serviceAccountOf returns "namespace/name" when u is a service account, or
// "" when it is not.
func serviceAccountOf(u user.Info) string {
	if u == nil {
		return ""
	}
	namespace, name, err := serviceaccount.SplitUsername(u.GetName())
	if err != nil {
		return ""
	}
	return namespace + "/" + name
}
