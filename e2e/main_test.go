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
	"path/filepath"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"

	"github.com/datavolume/datavolume/pkg/localcluster"
)

// cluster is the one local cluster all tests share.
var cluster *localcluster.Cluster

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	cfg, err := configFromEnv()
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

// configFromEnv reads the paths `make test` passes; missing ones are an
// error, never a skip.
func configFromEnv() (localcluster.Config, error) {
	get := func(name string) (string, error) {
		v := os.Getenv(name)
		if v == "" {
			return "", fmt.Errorf("%s is not set: run the e2e tests with `make test`", name)
		}
		return v, nil
	}
	kubeBin, err := get("DATAVOLUME_KUBE_BIN")
	if err != nil {
		return localcluster.Config{}, err
	}
	etcd, err := get("DATAVOLUME_ETCD")
	if err != nil {
		return localcluster.Config{}, err
	}
	bin, err := get("DATAVOLUME_BIN")
	if err != nil {
		return localcluster.Config{}, err
	}
	root, err := filepath.Abs("..")
	if err != nil {
		return localcluster.Config{}, err
	}
	// Several suites may run at once (each with its own directory and lock)
	// while the cluster has no node; the default is one per machine.
	dir := envOr("DATAVOLUME_E2E_DIR", filepath.Join(root, "_output", "e2e"))
	lock := envOr("DATAVOLUME_LOCK", "/run/datavolume-localcluster.lock")
	return localcluster.Config{
		Dir:             dir,
		KubeBinDir:      kubeBin,
		EtcdBinary:      etcd,
		APIServerBinary: filepath.Join(bin, "datavolume-apiserver"),
		WebhookBinary:   filepath.Join(bin, "datavolume-webhook"),
		ArtifactsDir:    filepath.Join(root, "artifacts"),
		LockFile:        lock,
		Log: funcr.New(func(_, args string) {
			fmt.Fprintf(os.Stderr, "%s cluster: %s\n", time.Now().Format("15:04:05"), args)
		}, funcr.Options{}),
	}, nil
}

func envOr(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}
