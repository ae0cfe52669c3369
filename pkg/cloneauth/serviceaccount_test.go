package cloneauth

import (
	"testing"

	"gotest.tools/v3/assert"
	"k8s.io/apiserver/pkg/authentication/user"
)

func TestServiceAccountUser(t *testing.T) {
	got := ServiceAccountUser("vms", "default")

	assert.DeepEqual(t, got, user.Info(&user.DefaultInfo{
		Name:   "system:serviceaccount:vms:default",
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:vms", "system:authenticated"},
	}))
}

func TestServiceAccountOf(t *testing.T) {
	for _, tc := range []struct {
		name string
		user user.Info
		want string
	}{
		{name: "service account", user: ServiceAccountUser("vms", "cloner"), want: "vms/cloner"},
		{name: "person", user: alice},
		{name: "look-alike without a name", user: &user.DefaultInfo{Name: "system:serviceaccount:vms:"}},
		{name: "no user"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, serviceAccountOf(tc.user), tc.want)
		})
	}
}
