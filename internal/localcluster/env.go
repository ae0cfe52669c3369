package localcluster

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/go-logr/logr/funcr"
)

// DefaultLockFile is the machine-wide lock a cluster holds while it runs.
const DefaultLockFile = "/run/datavolume-localcluster.lock"

// ConfigFromEnv is the configuration test suites use: binaries and images
// from the variables `make test` and `make bench` set (DATAVOLUME_KUBE_BIN,
// DATAVOLUME_ETCD, DATAVOLUME_IMAGES), the repository at root, state in
// DATAVOLUME_E2E_DIR or else root/_output/<name>, the lock in
// DATAVOLUME_LOCK or else DefaultLockFile, and kube-apiserver's
// /debug/pprof served when DATAVOLUME_KUBE_PROFILING is true. A missing variable is an error,
// so a suite fails rather than skips when run outside make.
func ConfigFromEnv(root, name string) (Config, error) {
	var missing []error
	get := func(variable string) string {
		v := os.Getenv(variable)
		if v == "" {
			missing = append(missing, fmt.Errorf("%s is not set: run the suite with make", variable))
		}
		return v
	}
	kubeBin, etcd, images := get("DATAVOLUME_KUBE_BIN"), get("DATAVOLUME_ETCD"), get("DATAVOLUME_IMAGES")
	if len(missing) > 0 {
		return Config{}, errors.Join(missing...)
	}
	root, err := filepath.Abs(root)
	if err != nil {
		return Config{}, err
	}
	return Config{
		Dir:          envOr("DATAVOLUME_E2E_DIR", filepath.Join(root, "_output", name)),
		LockFile:     envOr("DATAVOLUME_LOCK", DefaultLockFile),
		KubeBinDir:   kubeBin,
		EtcdBinary:   etcd,
		ImagesDir:    images,
		ArtifactsDir: filepath.Join(root, "artifacts"),
		// For profiling kube-apiserver under a benchmark; off by default.
		KubeProfiling: os.Getenv("DATAVOLUME_KUBE_PROFILING") == "true",
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
