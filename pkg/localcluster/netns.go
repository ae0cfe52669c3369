package localcluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// The node's network namespace. containerd, the kubelet and kube-proxy run
// in a network namespace of the node's own, so the bridge, the pods'
// network namespaces and every iptables rule kube-proxy, the kubelet and the
// CNI plugins write live there, and go with it at stop: the host's tables
// are never written. A veth pair joins it to the host:
//
//	host                                    node network namespace
//	kube-apiserver on 10.244.255.1 ─ dvnode0 ═ eth0 10.244.255.2 ─ dvcni0 10.244.0.1 ─ pods 10.244.0.0/24
//
// The host routes the pod and Service ranges to the node's side of the
// link; the node's default route is the host's side, where kube-apiserver
// (the kubernetes Service's endpoint) and the test servers listen.
const (
	// NodeNetns is the node's network namespace, pinned as
	// /run/netns/datavolume-node (`ip netns exec datavolume-node …`, or
	// `nsenter --net=/run/netns/datavolume-node …`, to look inside).
	NodeNetns = "datavolume-node"
	// hostLinkName is the host's end of the veth pair; nodeLinkName the
	// node's, inside its namespace.
	hostLinkName = "dvnode0"
	nodeLinkName = "eth0"
	// DefaultNodeLinkRange holds the two ends of the link: the first address
	// is the host's, the second the node's. It lies in kind's pod range
	// (10.244.0.0/16), away from the /24 our pods use, and is checked
	// against the host's routes at start.
	DefaultNodeLinkRange = "10.244.255.0/30"
)

// nodeNetnsDir is where `ip netns` pins named network namespaces.
const nodeNetnsDir = "/run/netns"

// nodeLink is the link between the host and the node's namespace.
type nodeLink struct {
	// cidr is the link's range; host and node its first two addresses.
	cidr       *net.IPNet
	host, node net.IP
}

// parseNodeLink reads a link range: IPv4, with room for two addresses.
func parseNodeLink(cidr string) (nodeLink, error) {
	ip, n, err := net.ParseCIDR(cidr)
	if err != nil {
		return nodeLink{}, fmt.Errorf("the node's link range: %w", err)
	}
	ones, bits := n.Mask.Size()
	if ip.To4() == nil || bits != 32 || ones > 30 {
		return nodeLink{}, fmt.Errorf("the node's link range %s: want an IPv4 range of at least 4 addresses (/30)", cidr)
	}
	base := n.IP.To4()
	host := net.IPv4(base[0], base[1], base[2], base[3]+1).To4()
	node := net.IPv4(base[0], base[1], base[2], base[3]+2).To4()
	return nodeLink{cidr: n, host: host, node: node}, nil
}

func (l nodeLink) prefixLen() int {
	ones, _ := l.cidr.Mask.Size()
	return ones
}

// nodeNetnsPath is the pin of the node's network namespace.
func nodeNetnsPath() string { return filepath.Join(nodeNetnsDir, NodeNetns) }

// inNodeNetns returns the command line that runs bin with args in the node's
// network namespace. nsenter joins only the network namespace, then execs
// bin: no new mount namespace, which would copy (and hold) the pods'
// network namespace mounts, as `ip netns exec` does.
func inNodeNetns(bin string, args ...string) (string, []string) {
	return "nsenter", append([]string{"--net=" + nodeNetnsPath(), "--", bin}, args...)
}

// createNodeNetwork makes the node's network namespace and the link to it,
// and routes the pod and Service ranges to it. routed are the ranges the
// host sends to the node.
func createNodeNetwork(ctx context.Context, link nodeLink, routed ...string) error {
	host := func(args ...string) []string { return args }
	node := func(args ...string) []string {
		bin, all := inNodeNetns(args[0], args[1:]...)
		return append([]string{bin}, all...)
	}
	hostAddr := fmt.Sprintf("%s/%d", link.host, link.prefixLen())
	nodeAddr := fmt.Sprintf("%s/%d", link.node, link.prefixLen())
	steps := [][]string{
		host("ip", "netns", "add", NodeNetns),
		host("ip", "link", "add", hostLinkName, "type", "veth", "peer", "name", nodeLinkName, "netns", NodeNetns),
		host("ip", "addr", "add", hostAddr, "dev", hostLinkName),
		host("ip", "link", "set", hostLinkName, "up"),
		node("ip", "link", "set", "lo", "up"),
		node("ip", "addr", "add", nodeAddr, "dev", nodeLinkName),
		node("ip", "link", "set", nodeLinkName, "up"),
		node("ip", "route", "add", "default", "via", link.host.String()),
		// Per network namespace: the node forwards between its link and the
		// bridge, and pod-to-Service traffic on one bridge passes iptables
		// (br_netfilter, loaded by the host, is checked by preflight).
		node("sysctl", "-q", "-w", "net.ipv4.ip_forward=1", "net.bridge.bridge-nf-call-iptables=1"),
	}
	for _, r := range routed {
		steps = append(steps, host("ip", "route", "add", r, "via", link.node.String(), "dev", hostLinkName))
	}
	for _, step := range steps {
		if out, err := exec.CommandContext(ctx, step[0], step[1:]...).CombinedOutput(); err != nil {
			return fmt.Errorf("making the node's network (%s): %w: %s", strings.Join(step, " "), err, bytes.TrimSpace(out))
		}
	}
	return nil
}

// removeNodeNetwork deletes the link (and with it the host's routes through
// it) and the node's network namespace, and with it the bridge, the node's
// iptables rules and whatever else the node made in it, once no process is
// left in it.
func removeNodeNetwork(ctx context.Context) error {
	var errs []error
	errs = append(errs, deleteLink(ctx, hostLinkName))
	if _, err := os.Stat(nodeNetnsPath()); err == nil {
		if out, err := exec.CommandContext(ctx, "ip", "netns", "delete", NodeNetns).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("ip netns delete %s: %w: %s", NodeNetns, err, bytes.TrimSpace(out)))
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// nodeNetworkLeft lists what of the node's network is still on the host.
func nodeNetworkLeft() []string {
	var left []string
	if exists(nodeNetnsPath()) {
		left = append(left, "network namespace "+nodeNetnsPath())
	}
	if linkExists(hostLinkName) {
		left = append(left, "link "+hostLinkName)
	}
	return left
}
