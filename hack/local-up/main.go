// Command local-up runs the embedded default: a real single-node cluster
// (node01) whose Pods run datavolume-apiserver behind the aggregation layer
// and datavolume-webhook admitting DataVolumes and VirtualMachines, until
// Ctrl-C or SIGTERM; then it removes what the node left on the machine.
// `make run` builds what it needs and runs it.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"

	"github.com/datavolume/datavolume/internal/localcluster"
	"github.com/datavolume/datavolume/internal/localcluster/nodenet"
	"github.com/datavolume/datavolume/internal/localcluster/overlay"
	"github.com/datavolume/datavolume/pkg/version"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "local-up: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	var cfg localcluster.Config
	flag.StringVar(&cfg.Dir, "dir", "_output/local", "Directory for the cluster's state, logs and kubeconfig; reset at start.")
	flag.StringVar(&cfg.KubeBinDir, "kube-bin-dir", "", "Directory with kube-apiserver, kube-controller-manager, kube-scheduler, kube-proxy, kubelet and kubectl.")
	flag.StringVar(&cfg.EtcdBinary, "etcd", "", "Path of etcd.")
	flag.StringVar(&cfg.ImagesDir, "images", "_output/images", "Directory with the image tarballs and images.json of hack/build-images.sh.")
	flag.StringVar(&cfg.ArtifactsDir, "artifacts", "artifacts", "The repository's artifacts directory.")
	flag.StringVar(&cfg.NodeName, "node-name", localcluster.DefaultNodeName, "Name of the node.")
	flag.StringVar(&cfg.NodeLinkRange, "node-link-range", nodenet.DefaultNodeLinkRange, "IPv4 range of the link between this host and the node's network namespace: the host's end (kube-apiserver, and where pods reach this host) takes its first address, the node its second.")
	flag.StringVar(&cfg.PodRange, "pod-range", nodenet.DefaultPodRange, "IPv4 range the node's pods take their addresses from (kind's pod range gives each node a /24 of 10.244.0.0/16; this is the one node's). Must clear the Service range, the link and the host's routes.")
	flag.StringVar(&cfg.ServiceRange, "service-range", nodenet.DefaultServiceRange, "IPv4 range of the Services' cluster IPs (kind's); its first address is the kubernetes Service's and its tenth cluster DNS's. Must clear the pod range, the link and the host's routes.")
	flag.StringVar(&cfg.LockFile, "lock", localcluster.DefaultLockFile, "Machine-wide lock held while the cluster runs.")
	startedAt := flag.Int64("started-at", 0, "When the command that runs this one started (Unix nanoseconds), e.g. make run with its builds; the ready line gives both times.")
	showVersion := flag.Bool("version", false, "Print the build's version and revision, and exit.")
	flag.Parse()
	if *showVersion {
		fmt.Printf("local-up %s\n", version.Get())
		return nil
	}

	start := time.Now()
	log := funcr.New(func(prefix, args string) {
		fmt.Fprintf(os.Stderr, "%s %s\n", time.Now().Format("15:04:05"), args)
	}, funcr.Options{})
	cfg.Log = log

	for _, p := range []*string{&cfg.Dir, &cfg.ImagesDir, &cfg.ArtifactsDir} {
		abs, err := filepath.Abs(*p)
		if err != nil {
			return err
		}
		*p = abs
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cluster, err := localcluster.Start(ctx, cfg)
	if err != nil {
		return err
	}
	printUsage(log, cluster, cfg, time.Since(start), *startedAt)

	<-ctx.Done()
	fmt.Fprintln(os.Stderr, "stopping the local cluster")
	if err := cluster.Stop(); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "stopped; state and logs remain in %s\n", cfg.Dir)
	return nil
}

func printUsage(_ logr.Logger, c *localcluster.Cluster, cfg localcluster.Config, took time.Duration, startedAt int64) {
	fmt.Printf(`
The local cluster is up. On this host: etcd, kube-apiserver,
kube-controller-manager, kube-scheduler, containerd, kube-proxy and the
kubelet of node %[1]s. As Pods (kubectl get pods -A): CoreDNS,
local-path-provisioner, the demo disk server, and from artifacts/deploy
datavolume-apiserver (cdi.kubevirt.io v1beta1, v1alpha1, behind the
aggregator) with its etcd on a local PersistentVolume, datavolume-webhook,
which both API servers call to admit DataVolumes and VirtualMachines, and
datavolume-controller, which fills DataVolumes with datavolume-cloner Jobs.
Storage: the default StorageClass "local" provisions filesystem claims
under %[7]s; for a Block claim add a volume as the seed's 6.10.4 does
(losetup -f, then a PersistentVolume on node %[1]s; see the README).
A demo disk to import, served in the cluster:
  %[8]s

  export KUBECONFIG=%[2]s
  export PATH=%[3]s:$PATH      # its kubectl
  kubectl get nodes,pods -A
  kubectl logs -n datavolume-system deploy/datavolume-apiserver
  kubectl create namespace example-ns
  kubectl create -n example-ns -f artifacts/examples/example-clone-dv.yaml
  kubectl get dv -n example-ns
  kubectl explain datavolume.spec.source.pvc

Host logs: %[4]s   Audit: %[5]s (datavolume-apiserver), %[6]s (kube-apiserver)
The node's network is a namespace of its own (ip netns exec %[9]s …),
linked to this host at %[10]s (this host; kube-apiserver and servers pods
must reach) and %[11]s (the node).
Stop with Ctrl-C: every process, mount, loop device, the node's network
namespace (its bridge, iptables rules and pods' namespaces with it), the
host's three egress rules, cgroups and sysctls the node changed are put back.

`, cfg.NodeName, c.Kubeconfig, cfg.KubeBinDir, c.LogDir(), c.AuditLog, c.KubeAuditLog, c.ProvisionedVolumesDir(), overlay.DemoDiskURL, nodenet.NodeNetns, c.HostAddressForPods(), c.NodeIP())
	total := ""
	if startedAt > 0 {
		total = fmt.Sprintf(" (%s since make run started, builds included)", time.Since(time.Unix(0, startedAt)).Round(100*time.Millisecond))
	}
	fmt.Printf("ready in %s%s: KUBECONFIG=%s\n", took.Round(100*time.Millisecond), total, c.Kubeconfig)
}
