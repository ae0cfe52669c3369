//go:build e2e

// Package e2e tests datavolume against a real local cluster: etcd,
// kube-apiserver, kube-controller-manager, datavolume-apiserver and
// datavolume-webhook as processes, driven with the real kubectl. `make test`
// builds what it needs and runs it; the paths come from the environment.
package e2e

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/datavolume/datavolume/pkg/localcluster"
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
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
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
	return code
}
