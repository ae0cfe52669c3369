//go:build e2e

package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

var (
	profileDir     = flag.String("dv.profile", "", "after the rounds, write a CPU profile of kube-apiserver per path, taken while that path alone creates, to this directory (kube-apiserver must serve /debug/pprof: DATAVOLUME_KUBE_PROFILING=true)")
	profileSeconds = flag.Int("dv.profile.seconds", 15, "length of each -dv.profile profile")
)

// profilePaths, with -dv.profile, takes one CPU profile of kube-apiserver
// per path while workers clients create on that path alone, and writes it
// to <dir>/<benchmark>-<path>.pprof, for `go tool pprof -diff_base`.
func profilePaths(ctx context.Context, client dynamic.Interface, benchmark string, paths []*path, workers int) error {
	if *profileDir == "" {
		return nil
	}
	if err := os.MkdirAll(*profileDir, 0o755); err != nil {
		return err
	}
	rc, err := clientcmd.BuildConfigFromFlags("", cluster.Kubeconfig)
	if err != nil {
		return err
	}
	httpClient, err := rest.HTTPClientFor(rc)
	if err != nil {
		return err
	}
	for _, p := range paths {
		file := filepath.Join(*profileDir, benchmark+"-"+p.name+".pprof")
		if err := profileWhileCreating(ctx, client, httpClient, rc.Host, p, file, workers); err != nil {
			return fmt.Errorf("%s path: profiling kube-apiserver: %w", p.name, err)
		}
		fmt.Printf("kube-apiserver CPU profile, %s path, %ds: %s\n", p.name, *profileSeconds, file)
	}
	return nil
}

func profileWhileCreating(ctx context.Context, client dynamic.Interface, httpClient *http.Client, host string, p *path, file string, workers int) error {
	var stop atomic.Bool
	created := make(chan error, 1)
	go func() {
		for round := 0; !stop.Load(); round++ {
			if _, _, err := createRound(ctx, client, p, fmt.Sprintf("prof-r%d", round), *createsRound, workers); err != nil {
				created <- err
				return
			}
		}
		created <- nil
	}()
	// The creates are under way before the profile starts.
	time.Sleep(time.Second)
	podIP, err := cluster.Kubectl(ctx, "", "get", "pods", "-n", "datavolume-system", "-l", "app.kubernetes.io/name=datavolume-webhook",
		"-o", "jsonpath={.items[0].status.podIP}")
	if err != nil {
		stop.Store(true)
		<-created
		return err
	}
	conns := watchConnections(strings.TrimSpace(podIP), webhookPort)
	createsBefore, countErr := createdCount(ctx, p)
	profile, err := fetchProfile(ctx, httpClient, fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", host, *profileSeconds))
	createsAfter, err2 := createdCount(ctx, p)
	stop.Store(true)
	fmt.Printf("%s path: TCP connections from this host to the webhook pod %s:%d seen during the profile: %d\n", p.name, strings.TrimSpace(podIP), webhookPort, conns())
	if countErr = errors.Join(countErr, err2); countErr != nil {
		fmt.Printf("%s path: creates during the profile: not counted: %v\n", p.name, countErr)
	} else {
		fmt.Printf("%s path: creates during the profile: %.0f\n", p.name, createsAfter-createsBefore)
	}
	if createErr := <-created; createErr != nil {
		return createErr
	}
	if err != nil {
		return err
	}
	return os.WriteFile(file, profile, 0o644)
}

// createdCount is kube-apiserver's count of the creates answered 201 on
// p's group and resource.
func createdCount(ctx context.Context, p *path) (float64, error) {
	metrics, err := cluster.Kubectl(ctx, "", "get", "--raw", "/metrics")
	if err != nil {
		return 0, err
	}
	var total float64
	for line := range strings.Lines(metrics) {
		if !strings.HasPrefix(line, "apiserver_request_total{") || !strings.Contains(line, `verb="POST"`) || !strings.Contains(line, `code="201"`) ||
			!strings.Contains(line, `group="`+p.resource.Group+`"`) || !strings.Contains(line, `resource="`+p.resource.Resource+`"`) {
			continue
		}
		fields := strings.Fields(line)
		if v, err := strconv.ParseFloat(fields[len(fields)-1], 64); err == nil {
			total += v
		}
	}
	return total, nil
}

// webhookPort is datavolume-webhook's container port.
const webhookPort = 8443

// watchConnections samples the host's TCP connections to ip:port (IPv4)
// every 50 ms until the returned function is called, which returns how
// many distinct ones (by local address and port) it saw: with connections
// reused, a few.
func watchConnections(ip string, port int) func() int {
	seen := map[string]bool{}
	done := make(chan struct{})
	finished := make(chan struct{})
	// /proc/net/tcp writes an address as the hex of its bytes in host
	// (little-endian) order.
	var remote string
	if parsed := net.ParseIP(ip).To4(); parsed != nil {
		remote = fmt.Sprintf("%02X%02X%02X%02X:%04X", parsed[3], parsed[2], parsed[1], parsed[0], port)
	}
	go func() {
		defer close(finished)
		ticker := time.NewTicker(50 * time.Millisecond)
		defer ticker.Stop()
		for {
			if raw, err := os.ReadFile("/proc/net/tcp"); err == nil && remote != "" {
				for line := range strings.Lines(string(raw)) {
					fields := strings.Fields(line)
					if len(fields) > 3 && fields[2] == remote {
						seen[fields[1]] = true
					}
				}
			}
			select {
			case <-done:
				return
			case <-ticker.C:
			}
		}
	}()
	return func() int {
		close(done)
		<-finished
		return len(seen)
	}
}

func fetchProfile(ctx context.Context, client *http.Client, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s: %.200s", url, resp.Status, body)
	}
	return body, nil
}
