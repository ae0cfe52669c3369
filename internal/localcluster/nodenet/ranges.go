package nodenet

import (
	"encoding/binary"
	"fmt"
	"net"
	"strings"
)

// The node's address ranges by default: kind's Service range, and the first
// /24 of kind's pod range (kind gives each node a /24 of 10.244.0.0/16; this
// is the one node). Both stay clear of the 10.0.0.0/24 many home and office
// networks use, and are checked against the host's routes at start.
const (
	DefaultPodRange     = "10.244.0.0/24"
	DefaultServiceRange = "10.96.0.0/16"
)

// Ranges are the addresses the node hands out: pods from pods, Services
// from services, of which the first is the kubernetes Service's and the
// tenth cluster DNS's, as in kubeadm and kind.
type Ranges struct {
	Pods, Services         *net.IPNet
	KubernetesService, DNS net.IP
}

// ParseRanges reads the pod and Service ranges and checks them against each
// other and against the node's link, naming every problem at once.
func ParseRanges(pods, services string, link Link) (Ranges, error) {
	var r Ranges
	var problems []string
	parse := func(what, cidr string, minOnes, maxOnes int) *net.IPNet {
		ip, n, err := net.ParseCIDR(cidr)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s %q is not a CIDR range", what, cidr))
			return nil
		}
		ones, bits := n.Mask.Size()
		switch {
		case ip.To4() == nil || bits != 32:
			problems = append(problems, fmt.Sprintf("%s %s: want an IPv4 range (the node is IPv4 only)", what, cidr))
			return nil
		case !ip.Equal(n.IP):
			problems = append(problems, fmt.Sprintf("%s %s: the address is not the range's first (%s)", what, cidr, n))
			return nil
		case ones < minOnes || ones > maxOnes:
			problems = append(problems, fmt.Sprintf("%s %s: want a prefix between /%d and /%d", what, cidr, minOnes, maxOnes))
			return nil
		}
		return n
	}
	// host-local needs room for the gateway and a few dozen pods;
	// kube-apiserver takes at most a /12 of Services, and cluster DNS is
	// the range's tenth address.
	r.Pods = parse("the pod range", pods, 8, 26)
	r.Services = parse("the Service range", services, 12, 28)
	named := []struct {
		name string
		n    *net.IPNet
	}{{"the pod range", r.Pods}, {"the Service range", r.Services}, {"the node's link range", link.CIDR}}
	for i := range named {
		for _, other := range named[i+1:] {
			a, b := named[i], other
			if a.n != nil && b.n != nil && (a.n.Contains(b.n.IP) || b.n.Contains(a.n.IP)) {
				problems = append(problems, fmt.Sprintf("%s %s overlaps %s %s", a.name, a.n, b.name, b.n))
			}
		}
	}
	if len(problems) > 0 {
		return Ranges{}, fmt.Errorf("the local cluster's address ranges: %s", strings.Join(problems, "; "))
	}
	r.KubernetesService = nthAddress(r.Services, 1)
	r.DNS = nthAddress(r.Services, 10)
	return r, nil
}

// nthAddress is the n-th address after n's first.
func nthAddress(n *net.IPNet, i uint32) net.IP {
	ip := make(net.IP, 4)
	binary.BigEndian.PutUint32(ip, binary.BigEndian.Uint32(n.IP.To4())+i)
	return ip
}
