// Package nodenet is the local node's network: a network namespace of its
// own joined to the host by a veth pair, its pod and Service ranges, the
// pods' CNI configuration, and the few host routes and rules it needs, each
// made, listed and removed here and touching nothing else of the host's.
package nodenet

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
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
// (the kubernetes Service's endpoint) and the test servers listen. Traffic
// from pods to other networks (an image on the internet) is masqueraded
// twice: to the node's address by the CNI plugin, in the node's namespace,
// then to the host's by the three rules of egressRules, the only ones this
// launcher writes in the host's tables, marked with egressComment and
// removed at stop.
const (
	// NodeNetns is the node's network namespace, pinned as
	// /run/netns/datavolume-node (`ip netns exec datavolume-node …`, or
	// `nsenter --net=/run/netns/datavolume-node …`, to look inside).
	NodeNetns = "datavolume-node"
	// HostLinkName is the host's end of the veth pair; nodeLinkName the
	// node's, inside its namespace.
	HostLinkName = "dvnode0"
	nodeLinkName = "eth0"
	// DefaultNodeLinkRange holds the two ends of the link: the first address
	// is the host's, the second the node's. It lies in kind's pod range
	// (10.244.0.0/16), away from the /24 our pods use, and is checked
	// against the host's routes at start.
	DefaultNodeLinkRange = "10.244.255.0/30"
)

// NetnsDir is where `ip netns` pins named network namespaces.
const NetnsDir = "/run/netns"

// Link is the link between the host and the node's namespace.
type Link struct {
	// CIDR is the link's range; Host and Node its first two addresses.
	CIDR       *net.IPNet
	Host, Node net.IP
}

// ParseLink reads a link range: IPv4, with room for two addresses.
func ParseLink(cidr string) (Link, error) {
	ip, n, err := net.ParseCIDR(cidr)
	if err != nil {
		return Link{}, fmt.Errorf("the node's link range: %w", err)
	}
	ones, bits := n.Mask.Size()
	if ip.To4() == nil || bits != 32 || ones > 30 {
		return Link{}, fmt.Errorf("the node's link range %s: want an IPv4 range of at least 4 addresses (/30)", cidr)
	}
	base := n.IP.To4()
	host := net.IPv4(base[0], base[1], base[2], base[3]+1).To4()
	node := net.IPv4(base[0], base[1], base[2], base[3]+2).To4()
	return Link{CIDR: n, Host: host, Node: node}, nil
}

func (l Link) prefixLen() int {
	ones, _ := l.CIDR.Mask.Size()
	return ones
}

// NodeNetnsPath is the pin of the node's network namespace.
func NodeNetnsPath() string { return filepath.Join(NetnsDir, NodeNetns) }

// InNodeNetns returns the command line that runs bin with args in the node's
// network namespace. nsenter joins only the network namespace, then execs
// bin: no new mount namespace, which would copy (and hold) the pods'
// network namespace mounts, as `ip netns exec` does.
func InNodeNetns(bin string, args ...string) (string, []string) {
	return "nsenter", append([]string{"--net=" + NodeNetnsPath(), "--", bin}, args...)
}

// Create makes the node's network namespace and the link to it,
// and routes the pod and Service ranges to it. routed are the ranges the
// host sends to the node.
func Create(ctx context.Context, link Link, routed ...string) error {
	host := func(args ...string) []string { return args }
	node := func(args ...string) []string {
		bin, all := InNodeNetns(args[0], args[1:]...)
		return append([]string{bin}, all...)
	}
	hostAddr := fmt.Sprintf("%s/%d", link.Host, link.prefixLen())
	nodeAddr := fmt.Sprintf("%s/%d", link.Node, link.prefixLen())
	steps := [][]string{
		host("ip", "netns", "add", NodeNetns),
		host("ip", "link", "add", HostLinkName, "type", "veth", "peer", "name", nodeLinkName, "netns", NodeNetns),
		host("ip", "addr", "add", hostAddr, "dev", HostLinkName),
		host("ip", "link", "set", HostLinkName, "up"),
		node("ip", "link", "set", "lo", "up"),
		node("ip", "addr", "add", nodeAddr, "dev", nodeLinkName),
		node("ip", "link", "set", nodeLinkName, "up"),
		node("ip", "route", "add", "default", "via", link.Host.String()),
		// Per network namespace: the node forwards between its link and the
		// bridge, and pod-to-Service traffic on one bridge passes iptables
		// (br_netfilter, loaded by the host, is checked by preflight).
		node("sysctl", "-q", "-w", "net.ipv4.ip_forward=1", "net.bridge.bridge-nf-call-iptables=1"),
	}
	for _, r := range routed {
		steps = append(steps, host("ip", "route", "add", r, "via", link.Node.String(), "dev", HostLinkName))
	}
	for _, step := range steps {
		if out, err := exec.CommandContext(ctx, step[0], step[1:]...).CombinedOutput(); err != nil {
			return fmt.Errorf("making the node's network (%s): %w: %s", strings.Join(step, " "), err, bytes.TrimSpace(out))
		}
	}
	return nil
}

// Remove deletes the link (and with it the host's routes through
// it) and the node's network namespace, and with it the bridge, the node's
// iptables rules and whatever else the node made in it, once no process is
// left in it.
func Remove(ctx context.Context) error {
	var errs []error
	errs = append(errs, deleteLink(ctx, HostLinkName))
	if _, err := os.Stat(NodeNetnsPath()); err == nil {
		if out, err := exec.CommandContext(ctx, "ip", "netns", "delete", NodeNetns).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("ip netns delete %s: %w: %s", NodeNetns, err, bytes.TrimSpace(out)))
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Left lists what of the node's network is still on the host.
func Left() []string {
	var left []string
	if exists(NodeNetnsPath()) {
		left = append(left, "network namespace "+NodeNetnsPath())
	}
	if LinkExists(HostLinkName) {
		left = append(left, "link "+HostLinkName)
	}
	return left
}

// egressComment marks the host's rules that let the node's traffic out.
const egressComment = "datavolume-node-egress"

// egressRules are the host's rules (table, chain, rule) that forward the
// node's traffic to other networks, masqueraded to the host's address, and
// its replies back: inserted first in FORWARD, whose policy may be DROP
// (Docker sets it).
func egressRules(link Link) [][]string {
	mark := []string{"-m", "comment", "--comment", egressComment}
	return [][]string{
		append(append([]string{"nat", "POSTROUTING", "-s", link.CIDR.String(), "!", "-o", HostLinkName}, mark...), "-j", "MASQUERADE"),
		append(append([]string{"filter", "FORWARD", "-i", HostLinkName}, mark...), "-j", "ACCEPT"),
		append(append([]string{"filter", "FORWARD", "-o", HostLinkName, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED"}, mark...), "-j", "ACCEPT"),
	}
}

// EnableEgress lets the node's traffic out through the host with
// egressRules. The host must forward (net.ipv4.ip_forward), which the
// caller turns on and puts back at stop.
func EnableEgress(ctx context.Context, link Link) error {
	for _, r := range egressRules(link) {
		args := append([]string{"-w", "-t", r[0], "-I", r[1]}, r[2:]...)
		if out, err := exec.CommandContext(ctx, "iptables", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("letting the node's traffic out (iptables %s): %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
		}
	}
	return nil
}

// EgressRulesLeft lists the host's rules marked with egressComment, as
// `iptables -S` prints them, each with its table.
func EgressRulesLeft(ctx context.Context) [][]string {
	var left [][]string
	for _, tc := range [][2]string{{"nat", "POSTROUTING"}, {"filter", "FORWARD"}} {
		out, err := exec.CommandContext(ctx, "iptables", "-w", "-t", tc[0], "-S", tc[1]).Output()
		if err != nil {
			continue // no iptables: nothing of ours either
		}
		for _, line := range strings.Split(string(out), "\n") {
			if f := strings.Fields(line); len(f) > 2 && f[0] == "-A" && slices.Contains(f, egressComment) {
				left = append(left, append([]string{tc[0]}, f...))
			}
		}
	}
	return left
}

// RemoveEgress deletes the host's rules marked with egressComment, whatever
// link range the run that made them had; no other rule.
func RemoveEgress(ctx context.Context) error {
	var errs []error
	for _, r := range EgressRulesLeft(ctx) {
		args := append([]string{"-w", "-t", r[0], "-D"}, r[2:]...)
		if out, err := exec.CommandContext(ctx, "iptables", args...).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("iptables %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out)))
		}
	}
	return errors.Join(errs...)
}

// cniNetworkName is the pod network's name in the node's CNI configuration.
const cniNetworkName = "datavolume"

// CNICacheDir is where libcni, in containerd's CRI plugin, caches each
// attachment's result: a fixed path of the host, whatever containerd's root.
const CNICacheDir = "/var/lib/cni/results"

// CNICacheFilesOf lists the cache files in dir of the node's pods: those of
// its network (datavolume-<sandbox>-eth0) and of the same sandboxes'
// loopback (cni-loopback-<sandbox>-lo). Pods killed at stop are never torn
// down, so libcni does not remove them; another runtime's files stay.
func CNICacheFilesOf(dir string) []string {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var found []string
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), cniNetworkName+"-")
		if !ok {
			continue
		}
		found = append(found, filepath.Join(dir, e.Name()))
		// A sandbox's ID is 64 hex digits, then the interface's name.
		if len(rest) > 64 && rest[64] == '-' {
			loopback := filepath.Join(dir, "cni-loopback-"+rest[:64]+"-lo")
			if exists(loopback) {
				found = append(found, loopback)
			}
		}
	}
	return found
}

func RemoveCNICache(dir string) error {
	var errs []error
	for _, f := range CNICacheFilesOf(dir) {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// LinkExists says whether a network interface of that name is in the
// host's network namespace.
func LinkExists(name string) bool {
	_, err := os.Stat(filepath.Join("/sys/class/net", name))
	return err == nil
}

func deleteLink(ctx context.Context, name string) error {
	if !LinkExists(name) {
		return nil
	}
	if out, err := exec.CommandContext(ctx, "ip", "link", "delete", name).CombinedOutput(); err != nil {
		return fmt.Errorf("ip link delete %s: %w: %s", name, err, bytes.TrimSpace(out))
	}
	return nil
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}
