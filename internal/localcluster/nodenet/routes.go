package nodenet

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"strings"
)

// hostRoutesFile is the kernel's IPv4 routing table.
const hostRoutesFile = "/proc/net/route"

// CheckHostRoutes refuses ranges that clash with the host's routes; see
// checkRangesAgainstRoutes.
func CheckHostRoutes(ranges ...string) error {
	return checkRangesAgainstRoutes(hostRoutesFile, ranges...)
}

// checkRangesAgainstRoutes refuses ranges that a route of the host's
// already covers or lies in (a LAN, a VPN, another cluster), other than the
// default route and this node's own link (left by a run that was killed,
// removed before the node starts): the node's Services, pods and link would
// shadow those addresses on this machine.
func checkRangesAgainstRoutes(routesFile string, ranges ...string) error {
	routes, err := readRoutes(routesFile)
	if err != nil {
		return fmt.Errorf("reading the host's routes: %w", err)
	}
	var clashes []string
	for _, r := range ranges {
		_, ours, err := net.ParseCIDR(r)
		if err != nil {
			return err
		}
		for _, route := range routes {
			if route.iface == HostLinkName || isDefault(route.dst) {
				continue
			}
			if ours.Contains(route.dst.IP) || route.dst.Contains(ours.IP) {
				clashes = append(clashes, fmt.Sprintf("%s overlaps the host's route to %s via %s", r, route.dst, route.iface))
			}
		}
	}
	if len(clashes) > 0 {
		return fmt.Errorf("the local cluster's address ranges clash with this machine's network: %s", strings.Join(clashes, "; "))
	}
	return nil
}

type route struct {
	iface string
	dst   *net.IPNet
}

func isDefault(n *net.IPNet) bool {
	ones, _ := n.Mask.Size()
	return ones == 0
}

// readRoutes parses /proc/net/route: destination and mask in hex, in the
// host's (little-endian) byte order.
func readRoutes(path string) ([]route, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var routes []route
	lines := bufio.NewScanner(f)
	lines.Scan() // the header
	for lines.Scan() {
		fields := strings.Fields(lines.Text())
		if len(fields) < 8 {
			continue
		}
		dst, err1 := hexIPv4(fields[1])
		mask, err2 := hexIPv4(fields[7])
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("unreadable route %q", lines.Text())
		}
		routes = append(routes, route{iface: fields[0], dst: &net.IPNet{IP: dst, Mask: net.IPMask(mask)}})
	}
	return routes, lines.Err()
}

func hexIPv4(s string) (net.IP, error) {
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 4 {
		return nil, fmt.Errorf("not an IPv4 address in hex: %q", s)
	}
	ip := make(net.IP, 4)
	binary.BigEndian.PutUint32(ip, binary.LittleEndian.Uint32(b))
	return ip, nil
}
