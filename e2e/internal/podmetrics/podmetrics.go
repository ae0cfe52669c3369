// Package podmetrics reads the Prometheus metrics of datavolume-apiserver
// and datavolume-webhook in the local cluster, for the e2e tests and the
// benchmarks: client-go's rate limiter wait above all.
package podmetrics

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/datavolume/datavolume/internal/localcluster"
)

const (
	namespace    = "datavolume-system"
	apiserver    = "datavolume-apiserver"
	webhook      = "datavolume-webhook"
	apiserverTLS = 8443
	// webhookMetricsPort is the port of the webhook's --metrics-bind-address
	// default, on the pod's loopback: reached by port-forward.
	webhookMetricsPort = 8080
)

// APIServer reads datavolume-apiserver's /metrics from its pod, over the pod
// network, as the cluster admin (the server authorizes /metrics by
// SubjectAccessReview like any other path).
func APIServer(ctx context.Context, cluster *localcluster.Cluster) (string, error) {
	pod, err := runningPod(ctx, cluster, apiserver)
	if err != nil {
		return "", err
	}
	config, err := clientcmd.BuildConfigFromFlags("", cluster.Kubeconfig)
	if err != nil {
		return "", fmt.Errorf("loading the admin kubeconfig: %w", err)
	}
	// The cluster's CA signed the serving certificate, for the Service's name.
	config.Host = "https://" + net.JoinHostPort(pod.Status.PodIP, strconv.Itoa(apiserverTLS))
	config.TLSClientConfig.ServerName = apiserver + "." + namespace + ".svc"
	client, err := rest.HTTPClientFor(config)
	if err != nil {
		return "", fmt.Errorf("building an HTTPS client for %s: %w", apiserver, err)
	}
	return get(ctx, client, config.Host+"/metrics")
}

// Webhook reads datavolume-webhook's /metrics, served on its pod's loopback,
// through kubectl port-forward.
func Webhook(ctx context.Context, cluster *localcluster.Cluster) (string, error) {
	pod, err := runningPod(ctx, cluster, webhook)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, cluster.KubectlBinary(), "--kubeconfig", cluster.Kubeconfig, "port-forward",
		"--address=127.0.0.1", "-n", namespace, "pod/"+pod.Name, fmt.Sprintf(":%d", webhookMetricsPort))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return "", err
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("starting kubectl port-forward: %w", err)
	}
	defer func() {
		cancel()
		_ = cmd.Wait()
	}()
	// "Forwarding from 127.0.0.1:40123 -> 8080"
	forwarding := regexp.MustCompile(`^Forwarding from (127\.0\.0\.1:\d+) -> `)
	lines := bufio.NewScanner(stdout)
	var local string
	for lines.Scan() {
		if m := forwarding.FindStringSubmatch(lines.Text()); m != nil {
			local = m[1]
			break
		}
	}
	if local == "" {
		return "", fmt.Errorf("kubectl port-forward to %s printed no local port: %s", pod.Name, strings.TrimSpace(stderr.String()))
	}
	go func() { _, _ = io.Copy(io.Discard, stdout) }()
	return get(ctx, &http.Client{Timeout: 30 * time.Second}, "http://"+local+"/metrics")
}

func get(ctx context.Context, client *http.Client, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", fmt.Errorf("GET %s: %w", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", fmt.Errorf("GET %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	return string(body), nil
}

// runningPod is the one running, not terminating pod of a Deployment of ours.
func runningPod(ctx context.Context, cluster *localcluster.Cluster, name string) (*corev1.Pod, error) {
	out, err := cluster.Kubectl(ctx, "", "get", "pods", "-n", namespace, "-l", "app.kubernetes.io/name="+name, "-o", "json")
	if err != nil {
		return nil, err
	}
	var list corev1.PodList
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		return nil, fmt.Errorf("decoding the pods of %s: %w", name, err)
	}
	var running []*corev1.Pod
	for i := range list.Items {
		p := &list.Items[i]
		if p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning && p.Status.PodIP != "" {
			running = append(running, p)
		}
	}
	if len(running) != 1 {
		return nil, fmt.Errorf("%d running pods of %s, want 1", len(running), name)
	}
	return running[0], nil
}

// rateLimiterMetric is client-go's histogram of the time requests waited for
// their client's rate limiter, by verb and host.
const rateLimiterMetric = "rest_client_rate_limiter_duration_seconds"

// firstBucket is the histogram's smallest bound: a request counted above
// it waited for its limiter.
const firstBucket = "0.005"

// LimiterWait sums the rate limiter histogram over the hosts of one verb.
type LimiterWait struct {
	// Requests went through a rate limiter; Waited of them waited longer
	// than the first bucket (5 ms); Seconds is their total wait.
	Requests, Waited int
	Seconds          float64
}

// Sub is what happened between earlier and w.
func (w LimiterWait) Sub(earlier LimiterWait) LimiterWait {
	return LimiterWait{Requests: w.Requests - earlier.Requests, Waited: w.Waited - earlier.Waited, Seconds: w.Seconds - earlier.Seconds}
}

func (w LimiterWait) String() string {
	return fmt.Sprintf("%d requests, %d waited over 5ms, %.3fs in all", w.Requests, w.Waited, w.Seconds)
}

// RateLimiterWait reads the wait of requests with verb (e.g. POST) from
// metrics in Prometheus' text format. A server whose clients have not sent
// a rate-limited request yet has no such series (watches are not limited):
// that reads as zero requests.
func RateLimiterWait(metrics, verb string) LimiterWait {
	var w LimiterWait
	var count, fast float64
	for line := range strings.Lines(metrics) {
		name, labels, value, ok := parseSample(line)
		if !ok || !strings.HasPrefix(name, rateLimiterMetric) || labels["verb"] != verb {
			continue
		}
		switch strings.TrimPrefix(name, rateLimiterMetric) {
		case "_count":
			count += value
		case "_sum":
			w.Seconds += value
		case "_bucket":
			if labels["le"] == firstBucket {
				fast += value
			}
		}
	}
	w.Requests, w.Waited = int(count), int(count-fast)
	return w
}

// sample is `name{label="value",...} number` or `name number`.
var sample = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)`)
var label = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"`)

func parseSample(line string) (name string, labels map[string]string, value float64, ok bool) {
	if strings.HasPrefix(line, "#") {
		return "", nil, 0, false
	}
	m := sample.FindStringSubmatch(line)
	if m == nil {
		return "", nil, 0, false
	}
	value, err := strconv.ParseFloat(m[3], 64)
	if err != nil {
		return "", nil, 0, false
	}
	labels = map[string]string{}
	for _, l := range label.FindAllStringSubmatch(m[2], -1) {
		labels[l[1]] = l[2]
	}
	return m[1], labels, value, true
}

// Counter sums a counter's samples over all its label sets; a counter the
// server has not registered or not exported yet reads as zero.
func Counter(metrics, name string) float64 {
	return CounterWith(metrics, name, nil)
}

// CounterWith sums a counter's samples over the label sets that carry every
// label of want (among others); none reads as zero.
func CounterWith(metrics, name string, want map[string]string) float64 {
	var sum float64
	for line := range strings.Lines(metrics) {
		got, labels, value, ok := parseSample(line)
		if !ok || got != name {
			continue
		}
		matches := true
		for key, wantValue := range want {
			if labels[key] != wantValue {
				matches = false
				break
			}
		}
		if matches {
			sum += value
		}
	}
	return sum
}
