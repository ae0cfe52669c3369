// Package progress tracks how many bytes a job has moved and publishes it
// where a controller can read it.
//
// Two outputs exist, both refreshed at least once a second:
//
// The /metrics endpoint (flag --metrics-address) serves Prometheus text
// format. CDI's metric, which tools written for CDI read, is there under
// CDI's name, a counter holding the percent (0-100, 0 while the total is
// unknown, never going back):
//
//	kubevirt_cdi_import_progress_total{ownerUID="..."}  import, upload-server, blank (Kind Import)
//	kubevirt_cdi_clone_progress_total{ownerUID="..."}   clone, clone-source, clone-target (Kind Clone)
//
// and next to it our own gauges:
//
//	datavolume_cloner_progress_bytes{ownerUID="..."}    bytes processed so far
//	datavolume_cloner_total_bytes{ownerUID="..."}       bytes expected, 0 if unknown
//	datavolume_cloner_progress_percent{ownerUID="..."}  0-100, -1 if the total is unknown
//
// The progress file (flag --progress-file) is one JSON object, replaced
// atomically (written to a temporary name, then renamed) every second and
// once more when the job ends:
//
//	{"phase":"Running","bytesDone":1048576,"bytesTotal":4194304,"percent":"25.00%"}
//
// phase is Running, Succeeded or Failed; percent is "N/A" while the total
// is unknown, matching DataVolume status.progress. The bytes counted are
// source bytes: downloaded bytes for an import or upload, data bytes sent
// or received for a clone.
package progress

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Phases written to the progress file.
const (
	PhaseRunning   = "Running"
	PhaseSucceeded = "Succeeded"
	PhaseFailed    = "Failed"
)

// Counter counts bytes done against an expected total. The zero value is
// ready to use; all methods are safe for concurrent use.
type Counter struct {
	done     atomic.Int64
	total    atomic.Int64
	complete atomic.Bool
	delay    atomic.Int64 // per MiB, test only
}

// Add records n more bytes done.
func (c *Counter) Add(n int64) {
	d := time.Duration(c.delay.Load())
	if d <= 0 {
		c.done.Add(n)
		return
	}
	// Count MiB by MiB, sleeping before each MiB boundary, so that even a
	// large piece moves the progress gradually.
	for n > 0 {
		cur := c.done.Load()
		step := min(n, (cur>>20+1)<<20-cur)
		if (cur+step)&(1<<20-1) == 0 {
			time.Sleep(d)
		}
		c.done.Add(step)
		n -= step
	}
}

// SetDelayPerMiB makes Add sleep d for every MiB boundary the count
// crosses, counting the bytes MiB by MiB, to slow a job down to a known
// pace. It is a fault for tests (an e2e watches progress and kills a pod
// mid-copy), never for real use.
func (c *Counter) SetDelayPerMiB(d time.Duration) { c.delay.Store(int64(d)) }

// Complete records that the job finished: progress is 100% from now on,
// whatever the byte counts say (a blank disk moves no bytes; a streamed
// qcow2 image skips its tables).
func (c *Counter) Complete() { c.complete.Store(true) }

// SetTotal records the expected number of bytes; 0 means unknown.
func (c *Counter) SetTotal(n int64) { c.total.Store(n) }

// Done returns the bytes done so far.
func (c *Counter) Done() int64 { return c.done.Load() }

// Total returns the expected bytes, 0 if unknown.
func (c *Counter) Total() int64 { return c.total.Load() }

// Percent returns progress in 0..100, or -1 when the total is unknown.
func (c *Counter) Percent() float64 {
	if c.complete.Load() {
		return 100
	}
	total := c.Total()
	if total <= 0 {
		return -1
	}
	p := float64(c.Done()) * 100 / float64(total)
	return min(p, 100)
}

// Snapshot is what the progress file holds.
type Snapshot struct {
	Phase      string `json:"phase"`
	BytesDone  int64  `json:"bytesDone"`
	BytesTotal int64  `json:"bytesTotal"`
	Percent    string `json:"percent"`
}

// Snapshot returns the current state in the given phase.
func (c *Counter) Snapshot(phase string) Snapshot {
	s := Snapshot{Phase: phase, BytesDone: c.Done(), BytesTotal: c.Total(), Percent: "N/A"}
	if phase == PhaseSucceeded {
		s.Percent = "100.00%"
	} else if p := c.Percent(); p >= 0 {
		s.Percent = fmt.Sprintf("%.2f%%", p)
	}
	return s
}

// Reader counts the bytes read through it.
type Reader struct {
	R       interface{ Read([]byte) (int, error) }
	Counter *Counter
}

func (r *Reader) Read(p []byte) (int, error) {
	n, err := r.R.Read(p)
	r.Counter.Add(int64(n))
	return n, err
}

// Kind says which of CDI's progress metrics a job reports.
type Kind string

// Kinds of job.
const (
	Import Kind = "import" // kubevirt_cdi_import_progress_total
	Clone  Kind = "clone"  // kubevirt_cdi_clone_progress_total
)

// CDIMetric is the name of CDI's progress metric for a kind of job.
func (k Kind) CDIMetric() string { return "kubevirt_cdi_" + string(k) + "_progress_total" }

// Handler serves the counter as Prometheus text on /metrics. ownerUID
// labels the series like CDI's importer does, so one scrape config fits
// every job.
func Handler(c *Counter, ownerUID string, kind Kind) http.Handler {
	reg := prometheus.NewRegistry()
	labels := prometheus.Labels{"ownerUID": ownerUID}
	var shown atomic.Uint64 // float64 bits of the highest percent served
	reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: kind.CDIMetric(), Help: "The " + string(kind) + " progress in percentage", ConstLabels: labels,
		}, func() float64 {
			// A counter never goes back, though the total may be
			// revised as the job learns more.
			p := max(c.Percent(), 0)
			for {
				old := shown.Load()
				if p <= math.Float64frombits(old) {
					return math.Float64frombits(old)
				}
				if shown.CompareAndSwap(old, math.Float64bits(p)) {
					return p
				}
			}
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "datavolume_cloner_progress_bytes", Help: "Bytes processed so far.", ConstLabels: labels,
		}, func() float64 { return float64(c.Done()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "datavolume_cloner_total_bytes", Help: "Bytes expected in total, 0 if unknown.", ConstLabels: labels,
		}, func() float64 { return float64(c.Total()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "datavolume_cloner_progress_percent", Help: "Progress in percent, -1 if the total is unknown.", ConstLabels: labels,
		}, c.Percent),
	)
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	return mux
}

// FileWriter keeps a progress file up to date.
type FileWriter struct {
	Path     string
	Counter  *Counter
	Interval time.Duration // defaults to one second
}

// Run rewrites the file every interval until ctx is done. Write the final
// phase with WriteFinal after Run returns.
func (w *FileWriter) Run(ctx context.Context) error {
	interval := w.Interval
	if interval <= 0 {
		interval = time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := w.write(PhaseRunning); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// WriteFinal records the job's outcome.
func (w *FileWriter) WriteFinal(succeeded bool) error {
	if succeeded {
		return w.write(PhaseSucceeded)
	}
	return w.write(PhaseFailed)
}

func (w *FileWriter) write(phase string) error {
	data, err := json.Marshal(w.Counter.Snapshot(phase))
	if err != nil {
		return err
	}
	tmp := filepath.Join(filepath.Dir(w.Path), "."+filepath.Base(w.Path)+".tmp")
	if err := os.WriteFile(tmp, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("writing progress file: %w", err)
	}
	if err := os.Rename(tmp, w.Path); err != nil {
		return fmt.Errorf("writing progress file: %w", err)
	}
	return nil
}
