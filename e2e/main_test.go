//go:build e2e

// Package e2e tests datavolume on a real single-node local cluster: etcd,
// kube-apiserver, kube-controller-manager, kube-scheduler, kube-proxy and the
// kubelet with containerd, our components deployed as Pods from
// artifacts/deploy, all driven with the real kubectl. `make test` builds what
// it needs and runs it; the paths come from the environment.
package e2e

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/datavolume/datavolume/internal/localcluster"
	"github.com/datavolume/datavolume/internal/localcluster/janitor"
)

// cluster is the one local cluster all tests share.
var cluster *localcluster.Cluster

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	cfg, err := localcluster.ConfigFromEnv("..", "e2e")
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	// A DataVolume annotated for it ends the controller mid-hand-over.
	cfg.ControllerArgs = []string{"--test-crash-points"}
	// Not the defaults (make run's, tried from a fresh clone): every range
	// must come from the configuration, not from a constant somewhere.
	cfg.PodRange, cfg.ServiceRange = "10.245.0.0/24", "10.97.0.0/16"
	// Another node's container log at the kubelet's fixed paths, its
	// process in a kubepods cgroup, a KUBE- chain in the host's filter table
	// and a cni- network namespace in /run/netns: ours go elsewhere (the
	// node's rules and pods' namespaces live in its own network namespace)
	// and cleaning up must leave these.
	decoy, err := janitor.PlaceDecoy()
	defer decoy.Remove()
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: placing the decoy: %v\n", err)
		return 1
	}
	// Read after the decoy is placed: its chain is the host's, not ours.
	before, err := janitor.ReadHostState()
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: reading the machine's state: %v\n", err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cluster, err = localcluster.Start(ctx, cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: starting the local cluster: %v\n", err)
		return 1
	}
	code := m.Run()
	if err := cluster.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: stopping the local cluster: %v\n", err)
		code = 1
	}
	// The node changed the machine; stopping it must have put everything back.
	fmt.Println("=== RUN   TestStoppedClusterLeavesNothingBehind")
	if left := janitor.Leftovers(context.Background(), cfg.Dir, before); len(left) > 0 {
		fmt.Printf("--- FAIL: TestStoppedClusterLeavesNothingBehind\n    left behind:\n      %s\n", strings.Join(left, "\n      "))
		return 1
	}
	fmt.Println("--- PASS: TestStoppedClusterLeavesNothingBehind (no process, mount, loop device, node network namespace or link, bridge, iptables chain or egress rule on the host, cgroup, container log link or changed sysctl)")
	fmt.Println("=== RUN   TestStoppedClusterTouchedNothingElse")
	if gone := decoy.Touched(); len(gone) > 0 {
		fmt.Printf("--- FAIL: TestStoppedClusterTouchedNothingElse\n    removed:\n      %s\n", strings.Join(gone, "\n      "))
		return 1
	}
	fmt.Println("--- PASS: TestStoppedClusterTouchedNothingElse (another node's pod log, container log link, kubepods cgroup and its process, KUBE-DECOY chain in the host's filter table, cni-decoy network namespace)")
	return code
}
