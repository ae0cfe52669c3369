// Command local-up runs the embedded default: a real local cluster with
// datavolume-apiserver behind its aggregation layer and datavolume-webhook
// admitting DataVolumes and VirtualMachines, until Ctrl-C or SIGTERM.
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

	"github.com/datavolume/datavolume/pkg/localcluster"
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
	flag.StringVar(&cfg.KubeBinDir, "kube-bin-dir", "", "Directory with kube-apiserver, kube-controller-manager and kubectl.")
	flag.StringVar(&cfg.EtcdBinary, "etcd", "", "Path of etcd.")
	flag.StringVar(&cfg.APIServerBinary, "apiserver", "_output/bin/datavolume-apiserver", "Path of datavolume-apiserver.")
	flag.StringVar(&cfg.WebhookBinary, "webhook", "_output/bin/datavolume-webhook", "Path of datavolume-webhook.")
	flag.StringVar(&cfg.ArtifactsDir, "artifacts", "artifacts", "The repository's artifacts directory.")
	flag.StringVar(&cfg.LockFile, "lock", "/run/datavolume-localcluster.lock", "Machine-wide lock held while the cluster runs.")
	flag.Parse()

	start := time.Now()
	log := funcr.New(func(prefix, args string) {
		fmt.Fprintf(os.Stderr, "%s %s\n", time.Now().Format("15:04:05"), args)
	}, funcr.Options{})
	cfg.Log = log

	for _, p := range []*string{&cfg.Dir, &cfg.APIServerBinary, &cfg.WebhookBinary, &cfg.ArtifactsDir} {
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
	printUsage(log, cluster, cfg, time.Since(start))

	<-ctx.Done()
	fmt.Fprintln(os.Stderr, "stopping the local cluster")
	if err := cluster.Stop(); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "stopped; state and logs remain in %s\n", cfg.Dir)
	return nil
}

func printUsage(_ logr.Logger, c *localcluster.Cluster, cfg localcluster.Config, took time.Duration) {
	fmt.Printf(`
The local cluster is up: etcd, kube-apiserver, kube-controller-manager,
datavolume-apiserver (cdi.kubevirt.io v1beta1, v1alpha1) behind the aggregator,
and datavolume-webhook, which both API servers call to admit DataVolumes and
VirtualMachines (the testing VirtualMachine CRD, kubevirt.io v1 and v1alpha3,
is installed when the cluster has none).

  export KUBECONFIG=%s
  export PATH=%s:$PATH      # kubectl %s
  kubectl create namespace example-ns
  kubectl create -n example-ns -f artifacts/examples/example-clone-dv.yaml
  kubectl get dv -n example-ns
  kubectl explain datavolume.spec.source.pvc
  kubectl create -n example-ns -f artifacts/examples/example-dv-vm.yaml
  kubectl get vm -n example-ns

Logs: %s   Audit: %s (datavolume-apiserver), %s (kube-apiserver)
Stop with Ctrl-C.

`, c.Kubeconfig, cfg.KubeBinDir, "v1.37.2", c.LogDir(), c.AuditLog, c.KubeAuditLog)
	fmt.Printf("ready in %s: KUBECONFIG=%s\n", took.Round(100*time.Millisecond), c.Kubeconfig)
}
