package controller

import (
	"k8s.io/apimachinery/pkg/labels"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/datavolume/datavolume/pkg/apis/cdi/v1beta1"
	cdilisters "github.com/datavolume/datavolume/pkg/generated/listers/cdi/v1beta1"
)

// metricsCollector is a Prometheus collector the binary registers.
type metricsCollector = prometheus.Collector

// metrics are the controller's own: DataVolumes by phase, bytes moved, and
// the Jobs' durations and retries. Progress itself is the cloner's
// (kubevirt_cdi_import_progress_total, kubevirt_cdi_clone_progress_total).
type metrics struct {
	phases      *phaseCollector
	bytesMoved  *prometheus.CounterVec
	jobDuration *prometheus.HistogramVec
	retries     *prometheus.CounterVec
}

func newMetrics(dataVolumes cdilisters.DataVolumeLister) *metrics {
	return &metrics{
		phases: &phaseCollector{lister: dataVolumes, desc: prometheus.NewDesc("datavolume_controller_datavolumes",
			"DataVolumes by phase.", []string{"phase"}, nil)},
		bytesMoved: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "datavolume_controller_bytes_moved_total", Help: "Bytes moved by Jobs that succeeded, by command.",
		}, []string{"command"}),
		jobDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "datavolume_controller_job_duration_seconds", Help: "Time from a Job's start to its end, by command and outcome.",
			Buckets: prometheus.ExponentialBuckets(0.5, 2, 14),
		}, []string{"command", "outcome"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "datavolume_controller_job_retries_total", Help: "Failed pods that a Job replaced, by command.",
		}, []string{"command"}),
	}
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.phases, m.bytesMoved, m.jobDuration, m.retries}
}

// observeTransition records a DataVolume reaching a phase.
func (m *metrics) observeTransition(dv *v1beta1.DataVolume, phase v1beta1.DataVolumePhase, o *observation) {
	command := string(o.plan.Command)
	if n := retries(o.job); n > dv.Status.RestartCount {
		m.retries.WithLabelValues(command).Add(float64(n - dv.Status.RestartCount))
	}
	if phase != v1beta1.Succeeded && phase != v1beta1.Failed {
		return
	}
	if o.result != nil && phase == v1beta1.Succeeded {
		m.bytesMoved.WithLabelValues(command).Add(float64(o.result.Bytes))
	}
	if o.job != nil && o.job.Status.StartTime != nil {
		end := o.now.Time
		if o.job.Status.CompletionTime != nil {
			end = o.job.Status.CompletionTime.Time
		}
		m.jobDuration.WithLabelValues(command, string(phase)).Observe(end.Sub(o.job.Status.StartTime.Time).Seconds())
	}
}

// phaseCollector counts DataVolumes by phase from the cache at each scrape.
type phaseCollector struct {
	lister cdilisters.DataVolumeLister
	desc   *prometheus.Desc
}

func (p *phaseCollector) Describe(ch chan<- *prometheus.Desc) { ch <- p.desc }

func (p *phaseCollector) Collect(ch chan<- prometheus.Metric) {
	dvs, err := p.lister.List(labels.Everything())
	if err != nil {
		return
	}
	counts := map[v1beta1.DataVolumePhase]int{}
	for _, dv := range dvs {
		counts[orPending(dv.Status.Phase)]++
	}
	for phase, n := range counts {
		ch <- prometheus.MustNewConstMetric(p.desc, prometheus.GaugeValue, float64(n), string(phase))
	}
}
