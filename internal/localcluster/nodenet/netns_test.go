package nodenet

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gotest.tools/v3/assert"
)

func TestNodeLinkAddresses(t *testing.T) {
	link, err := ParseLink(DefaultNodeLinkRange)
	assert.NilError(t, err)
	assert.Equal(t, link.Host.String(), "10.244.255.1", "the host's end: kube-apiserver, test servers")
	assert.Equal(t, link.Node.String(), "10.244.255.2", "the node's end: the kubelet's address")
	assert.Equal(t, link.prefixLen(), 30)

	link, err = ParseLink("192.168.77.16/28")
	assert.NilError(t, err)
	assert.Equal(t, link.Host.String(), "192.168.77.17")
	assert.Equal(t, link.Node.String(), "192.168.77.18")
}

func TestNodeLinkRangeRefused(t *testing.T) {
	for _, cidr := range []string{"10.244.255.0/31", "10.244.255.4/32", "fd00::/64", "10.244.255.0"} {
		_, err := ParseLink(cidr)
		assert.Assert(t, err != nil, cidr)
	}
}

func TestProcessesStartInTheNodesNetworkNamespaceOnly(t *testing.T) {
	bin, args := InNodeNetns("/usr/bin/kubelet", "--config", "c.yaml")
	assert.Equal(t, bin, "nsenter")
	// --net alone: no new mount namespace to copy the pods' mounts into.
	assert.DeepEqual(t, args, []string{"--net=/run/netns/datavolume-node", "--", "/usr/bin/kubelet", "--config", "c.yaml"})
}

// The host's only rules: masquerade what leaves the link's range for another
// network, forward it and its replies; each marked so cleanup removes them
// and nothing else.
func TestEgressRulesAreMarkedAndScopedToTheLink(t *testing.T) {
	link, err := ParseLink(DefaultNodeLinkRange)
	assert.NilError(t, err)
	rules := egressRules(link)
	assert.Equal(t, len(rules), 3)
	assert.DeepEqual(t, rules[0], []string{"nat", "POSTROUTING", "-s", "10.244.255.0/30", "!", "-o", "dvnode0",
		"-m", "comment", "--comment", egressComment, "-j", "MASQUERADE"})
	for _, r := range rules {
		assert.Assert(t, strings.Contains(strings.Join(r, " "), "--comment "+egressComment), r)
		assert.Assert(t, strings.Contains(strings.Join(r, " "), HostLinkName), "only traffic through the node's link: %v", r)
	}
}

// The node's pods' CNI cache files go, their loopback's with them; another
// runtime's stay.
func TestCNICacheFilesOfTheNodesPodsOnly(t *testing.T) {
	dir := t.TempDir()
	ours := strings.Repeat("a", 64)
	theirs := strings.Repeat("b", 64)
	for _, name := range []string{
		"datavolume-" + ours + "-eth0", "cni-loopback-" + ours + "-lo",
		"kindnet-" + theirs + "-eth0", "cni-loopback-" + theirs + "-lo",
	} {
		assert.NilError(t, os.WriteFile(filepath.Join(dir, name), []byte("{}"), 0o600))
	}
	assert.DeepEqual(t, CNICacheFilesOf(dir), []string{
		filepath.Join(dir, "datavolume-"+ours+"-eth0"), filepath.Join(dir, "cni-loopback-"+ours+"-lo"),
	})
	assert.NilError(t, RemoveCNICache(dir))
	left, err := os.ReadDir(dir)
	assert.NilError(t, err)
	var names []string
	for _, e := range left {
		names = append(names, e.Name())
	}
	assert.DeepEqual(t, names, []string{"cni-loopback-" + theirs + "-lo", "kindnet-" + theirs + "-eth0"})
}
