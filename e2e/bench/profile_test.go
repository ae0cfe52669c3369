//go:build e2e

package bench

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
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
	conns := watchConnections(webhookPort)
	profile, err := fetchProfile(ctx, httpClient, fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", host, *profileSeconds))
	stop.Store(true)
	fmt.Printf("%s path: TCP connections to port %d seen during the profile (kube-apiserver's to the webhook pod among them): %d\n", p.name, webhookPort, conns())
	if createErr := <-created; createErr != nil {
		return createErr
	}
	if err != nil {
		return err
	}
	return os.WriteFile(file, profile, 0o644)
}

// webhookPort is datavolume-webhook's container port.
const webhookPort = 8443

// watchConnections samples the host's TCP connections to port every 50 ms
// until the returned function is called, which returns how many distinct
// ones (by local address and port) it saw: with connections reused, a few.
func watchConnections(port int) func() int {
	seen := map[string]bool{}
	done := make(chan struct{})
	finished := make(chan struct{})
	suffix := fmt.Sprintf(":%04X", port)
	go func() {
		defer close(finished)
		ticker := time.NewTicker(50 * time.Millisecond)
		defer ticker.Stop()
		for {
			for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
				raw, err := os.ReadFile(table)
				if err != nil {
					continue
				}
				for line := range strings.Lines(string(raw)) {
					fields := strings.Fields(line)
					if len(fields) > 3 && strings.HasSuffix(fields[2], suffix) {
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
