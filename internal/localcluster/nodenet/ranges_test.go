package nodenet

import (
	"testing"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
)

func TestDefaultRanges(t *testing.T) {
	link, err := ParseLink(DefaultNodeLinkRange)
	assert.NilError(t, err)
	r, err := ParseRanges(DefaultPodRange, DefaultServiceRange, link)
	assert.NilError(t, err)
	assert.Check(t, is.Equal(r.Pods.String(), "10.244.0.0/24"))
	assert.Check(t, is.Equal(r.Services.String(), "10.96.0.0/16"))
	assert.Check(t, is.Equal(r.KubernetesService.String(), "10.96.0.1"), "the kubernetes Service: the range's first address")
	assert.Check(t, is.Equal(r.DNS.String(), "10.96.0.10"), "cluster DNS: the tenth, as kubeadm and kind have it")
}

func TestOtherRanges(t *testing.T) {
	link, err := ParseLink("192.168.77.0/30")
	assert.NilError(t, err)
	r, err := ParseRanges("172.30.4.0/23", "172.31.240.0/20", link)
	assert.NilError(t, err)
	assert.Check(t, is.Equal(r.KubernetesService.String(), "172.31.240.1"))
	assert.Check(t, is.Equal(r.DNS.String(), "172.31.240.10"))
}

func TestRangesRefusedNameEveryProblem(t *testing.T) {
	link, err := ParseLink(DefaultNodeLinkRange)
	assert.NilError(t, err)
	for _, tc := range []struct {
		pods, services string
		want           []string
	}{
		{"10.244.0.0/16", DefaultServiceRange, []string{"the pod range 10.244.0.0/16 overlaps the node's link range 10.244.255.0/30"}},
		{DefaultPodRange, "10.244.0.0/20", []string{"the pod range 10.244.0.0/24 overlaps the Service range 10.244.0.0/20"}},
		{"fd00::/64", "10.96.0.0/8", []string{
			"the pod range fd00::/64: want an IPv4 range",
			"the Service range 10.96.0.0/8: the address is not the range's first (10.0.0.0/8)"}},
		{"10.244.0.0/28", "10.96.0.0/11", []string{
			"the pod range 10.244.0.0/28: want a prefix between /8 and /26",
			"the Service range 10.96.0.0/11: want a prefix between /12 and /28"}},
		{"pods", "", []string{`the pod range "pods" is not a CIDR range`, `the Service range "" is not a CIDR range`}},
	} {
		_, err := ParseRanges(tc.pods, tc.services, link)
		assert.Assert(t, err != nil, "%s %s", tc.pods, tc.services)
		for _, w := range tc.want {
			assert.Check(t, is.Contains(err.Error(), w))
		}
	}
}
