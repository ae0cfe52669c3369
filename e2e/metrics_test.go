//go:build e2e

package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"testing"
	"time"
)

// controllerMetrics reads the leading datavolume-controller's /metrics over
// the pod network (the Lease names the leader's pod).
func controllerMetrics(t *testing.T) (string, error) {
	t.Helper()
	leader, err := cluster.Kubectl(testContext(t), "", "get", "lease", "datavolume-controller", "-n", "datavolume-system", "-o", "jsonpath={.spec.holderIdentity}")
	if err != nil || leader == "" {
		return "", fmt.Errorf("no leader: %v", err)
	}
	ip, err := cluster.Kubectl(testContext(t), "", "get", "pod", leader, "-n", "datavolume-system", "-o", "jsonpath={.status.podIP}")
	if err != nil || ip == "" {
		return "", fmt.Errorf("no IP for leader %s: %v", leader, err)
	}
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get("http://" + net.JoinHostPort(ip, "8080") + "/metrics")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	return string(body), err
}

// sample is the value of the first sample of a metric whose line matches
// the pattern (name with labels), or -1.
func sample(metrics, pattern string) float64 {
	m := regexp.MustCompile(`(?m)^` + pattern + `\s+([0-9.e+-]+)$`).FindStringSubmatch(metrics)
	if m == nil {
		return -1
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return -1
	}
	return v
}

// The controller's metrics, scraped from the real cluster after an import:
// DataVolumes by phase, bytes moved, Job durations, and client-go's
// workqueue and leader-election metrics. Not parallel: the tests that kill
// the leader would start a new one from zero.
func TestControllerMetricsAreServed(t *testing.T) {
	imgs := makeImages(t, diskSize)
	base := serveFiles(t, imgs.dir, nil)
	ns := restrictedNamespace(t, "metrics")
	create(t, ns, importYAML("disk", base+"/disk.raw", claimSize, ""))
	waitFor(t, ns, "disk", "condition=Ready", 3*time.Minute)

	eventually(t, 2*time.Minute, func() error {
		metrics, err := controllerMetrics(t)
		if err != nil {
			return err
		}
		for _, check := range []struct {
			pattern string
			min     float64
		}{
			{`datavolume_controller_datavolumes\{phase="Succeeded"\}`, 1},
			{`datavolume_controller_bytes_moved_total\{command="import"\}`, diskSize},
			{`datavolume_controller_job_duration_seconds_count\{command="import",outcome="[a-zA-Z]+"\}`, 1},
			{`workqueue_adds_total\{name="datavolume"\}`, 1},
			{`leader_election_master_status\{name="datavolume-controller"\}`, 1},
		} {
			if got := sample(metrics, check.pattern); got < check.min {
				return errorf("%s = %v, want ≥ %v (after a leader change, the new leader starts from zero)", check.pattern, got, check.min)
			}
		}
		return nil
	})
}
