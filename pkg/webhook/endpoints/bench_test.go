package endpoints_test

import (
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/datavolume/datavolume/pkg/webhook"
	"github.com/datavolume/datavolume/pkg/webhook/endpoints"
	"github.com/datavolume/datavolume/pkg/webhook/internal/endpointstest"
	"github.com/datavolume/datavolume/pkg/webhook/internal/webhooktest"
)

// BenchmarkAdmissionDataVolume is the in-process latency of one DataVolume
// review (decode, rules with lookups, answer), reported with p50 and p99.
func BenchmarkAdmissionDataVolume(b *testing.B) {
	handler := endpoints.New(benchmarkDependencies(b))
	b.Run("validate", func(b *testing.B) {
		benchmarkReview(b, handler, webhook.ValidateDataVolumesPath, endpointstest.DataVolumeReview(b))
	})
	b.Run("mutate", func(b *testing.B) {
		benchmarkReview(b, handler, webhook.MutateDataVolumesPath, endpointstest.DataVolumeReview(b))
	})
}

// BenchmarkAdmissionVirtualMachine is the same for a VirtualMachine with a
// cross-namespace clone template (the clone check answers in-process).
func BenchmarkAdmissionVirtualMachine(b *testing.B) {
	handler := endpoints.New(benchmarkDependencies(b))
	benchmarkReview(b, handler, webhook.ValidateVirtualMachinesPath, endpointstest.VirtualMachineReview(b))
}

// benchmarkDependencies are the fixtures plus a busy source namespace:
// 500 claims and 1000 pods, a tenth of them mounting claims.
func benchmarkDependencies(b *testing.B) endpoints.Dependencies {
	deps := endpointstest.Dependencies(b, func() bool { return true })
	objects := []runtime.Object{webhooktest.BoundClaim("src", "disk", "2Gi")}
	for i := range 500 {
		objects = append(objects, webhooktest.BoundClaim("src", fmt.Sprintf("claim-%d", i), "1Gi"))
	}
	for i := range 1000 {
		claim := "none"
		if i%10 == 0 {
			claim = fmt.Sprintf("claim-%d", i/10)
		}
		objects = append(objects, webhooktest.PodUsing("src", fmt.Sprintf("pod-%d", i), claim, corev1.PodRunning))
	}
	deps.Claims, deps.Pods = webhooktest.Listers(b, objects...)
	return deps
}

func benchmarkReview(b *testing.B, handler http.Handler, path string, body []byte) {
	var latencies []time.Duration
	b.ReportAllocs()
	for b.Loop() {
		start := time.Now()
		rec := endpointstest.Post(handler, path, body)
		latencies = append(latencies, time.Since(start))
		if rec.Code != http.StatusOK {
			b.Fatalf("HTTP %d: %s", rec.Code, rec.Body)
		}
	}
	slices.Sort(latencies)
	b.ReportMetric(float64(percentile(latencies, 50).Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(percentile(latencies, 99).Nanoseconds()), "p99-ns")
}

func percentile(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[(len(sorted)-1)*p/100]
}
