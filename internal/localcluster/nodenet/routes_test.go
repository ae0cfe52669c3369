package nodenet

import (
	"os"
	"path/filepath"
	"testing"

	"gotest.tools/v3/assert"
)

// A machine on 192.0.2.0/24 with a default route, this node's link and its
// routes from an earlier run, and (second table) an office VPN on 10.96.4.0/22.
const routes = `Iface	Destination	Gateway 	Flags	RefCnt	Use	Metric	Mask		MTU	Window	IRTT
eth0	00000000	010200C0	0003	0	0	0	00000000	0	0	0
dvnode0	0000F40A	02FFF40A	0003	0	0	0	00FFFFFF	0	0	0
dvnode0	00FFF40A	00000000	0001	0	0	0	FCFFFFFF	0	0	0
eth0	000200C0	00000000	0001	0	0	0	00FFFFFF	0	0	0
`

func writeRoutes(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "route")
	assert.NilError(t, os.WriteFile(path, []byte(text), 0o644))
	return path
}

func TestRangesClearOfTheHostsRoutes(t *testing.T) {
	assert.NilError(t, checkRangesAgainstRoutes(writeRoutes(t, routes), DefaultPodRange, DefaultServiceRange, DefaultNodeLinkRange))
}

func TestRangesClashingWithAHostRoute(t *testing.T) {
	vpn := routes + "tun0\t0004600A\t00000000\t0001\t0\t0\t0\t00FCFFFF\t0\t0\t0\n"
	err := checkRangesAgainstRoutes(writeRoutes(t, vpn), DefaultPodRange, DefaultServiceRange)
	assert.Error(t, err, "the local cluster's address ranges clash with this machine's network: 10.96.0.0/16 overlaps the host's route to 10.96.4.0/22 via tun0")
	// The old Service range against a home network on 10.0.0.0/24.
	home := routes + "wlan0\t0000000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"
	err = checkRangesAgainstRoutes(writeRoutes(t, home), "10.0.0.0/24")
	assert.ErrorContains(t, err, "10.0.0.0/24 overlaps the host's route to 10.0.0.0/24 via wlan0")
}

func TestNodeLinkRangeClashingWithAHostRoute(t *testing.T) {
	lan := routes + "eth1\t0000F40A\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n"
	err := checkRangesAgainstRoutes(writeRoutes(t, lan), DefaultNodeLinkRange)
	assert.ErrorContains(t, err, "10.244.255.0/30 overlaps the host's route to 10.244.0.0/16 via eth1")
}
