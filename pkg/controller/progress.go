package controller

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/datavolume/datavolume/pkg/apis/cdi/v1beta1"
)

// progressMetrics are the cloner's progress gauges, in percent, CDI's names
// first.
var progressMetrics = []string{
	"kubevirt_cdi_import_progress_total",
	"kubevirt_cdi_clone_progress_total",
	"datavolume_cloner_progress_percent",
}

// progressReader reads a running cloner's progress from its /metrics.
type progressReader struct {
	client *http.Client
	port   int32
}

func newProgressReader(port int32) *progressReader {
	return &progressReader{port: port, client: &http.Client{Timeout: 2 * time.Second}}
}

// read returns the pod's progress as status.progress says it ("45.12%"),
// or "" when the pod does not know it yet.
func (r *progressReader) read(ctx context.Context, pod *corev1.Pod) (v1beta1.DataVolumeProgress, error) {
	if pod.Status.PodIP == "" {
		return "", nil
	}
	url := "http://" + net.JoinHostPort(pod.Status.PodIP, strconv.Itoa(int(r.port))) + "/metrics"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return "", fmt.Errorf("reading progress of pod %s: %w", pod.Name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("reading progress of pod %s: %s", pod.Name, resp.Status)
	}
	return parseProgress(bufio.NewScanner(resp.Body))
}

// parseProgress finds the first progress gauge with a known value (0-100).
func parseProgress(lines *bufio.Scanner) (v1beta1.DataVolumeProgress, error) {
	found := map[string]float64{}
	for lines.Scan() {
		line := lines.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		for _, name := range progressMetrics {
			if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
				continue
			}
			fields := strings.Fields(line)
			v, err := strconv.ParseFloat(fields[len(fields)-1], 64)
			if err == nil {
				found[name] = v
			}
		}
	}
	if err := lines.Err(); err != nil {
		return "", err
	}
	for _, name := range progressMetrics {
		if v, ok := found[name]; ok && v >= 0 && v <= 100 {
			return formatProgress(v), nil
		}
	}
	return "", nil
}

// formatProgress writes a percentage as CDI does: two decimals.
func formatProgress(percent float64) v1beta1.DataVolumeProgress {
	return v1beta1.DataVolumeProgress(strconv.FormatFloat(percent, 'f', 2, 64) + "%")
}
