package progress_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gotest.tools/v3/assert"

	"github.com/datavolume/datavolume/pkg/cloner/progress"
)

func TestMetrics(t *testing.T) {
	c := &progress.Counter{}
	srv := httptest.NewServer(progress.Handler(c, "uid-1", progress.Import))
	defer srv.Close()
	scrape := func() string {
		resp, err := srv.Client().Get(srv.URL + "/metrics")
		assert.NilError(t, err)
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		assert.NilError(t, err)
		return string(body)
	}
	body := scrape()
	assert.Assert(t, strings.Contains(body, `datavolume_cloner_progress_percent{ownerUID="uid-1"} -1`), body)
	assert.Assert(t, strings.Contains(body, `kubevirt_cdi_import_progress_total{ownerUID="uid-1"} 0`), body)
	c.SetTotal(400)
	c.Add(100)
	body = scrape()
	for _, want := range []string{
		`datavolume_cloner_progress_percent{ownerUID="uid-1"} 25`,
		`datavolume_cloner_progress_bytes{ownerUID="uid-1"} 100`,
		`datavolume_cloner_total_bytes{ownerUID="uid-1"} 400`,
		"# TYPE datavolume_cloner_progress_percent gauge",
		`kubevirt_cdi_import_progress_total{ownerUID="uid-1"} 25`,
		"# TYPE kubevirt_cdi_import_progress_total counter",
	} {
		assert.Assert(t, strings.Contains(body, want), "missing %q in\n%s", want, body)
	}
	assert.Assert(t, !strings.Contains(body, "kubevirt_cdi_clone_progress_total"))
	// A revised total lowers our gauge, never CDI's counter.
	c.SetTotal(800)
	body = scrape()
	assert.Assert(t, strings.Contains(body, `datavolume_cloner_progress_percent{ownerUID="uid-1"} 12.5`), body)
	assert.Assert(t, strings.Contains(body, `kubevirt_cdi_import_progress_total{ownerUID="uid-1"} 25`), body)
	c.Complete()
	body = scrape()
	assert.Assert(t, strings.Contains(body, `datavolume_cloner_progress_percent{ownerUID="uid-1"} 100`), body)
	assert.Assert(t, strings.Contains(body, `kubevirt_cdi_import_progress_total{ownerUID="uid-1"} 100`), body)
}

func TestCloneMetricName(t *testing.T) {
	c := &progress.Counter{}
	c.SetTotal(10)
	c.Add(5)
	srv := httptest.NewServer(progress.Handler(c, "uid-2", progress.Clone))
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL + "/metrics")
	assert.NilError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	assert.NilError(t, err)
	assert.Assert(t, strings.Contains(string(body), `kubevirt_cdi_clone_progress_total{ownerUID="uid-2"} 50`), "%s", body)
	assert.Assert(t, !strings.Contains(string(body), "kubevirt_cdi_import_progress_total"))
}

// TestDelayPerMiB: the test-only fault slows Add by the MiB crossed.
func TestDelayPerMiB(t *testing.T) {
	c := &progress.Counter{}
	c.SetDelayPerMiB(20 * time.Millisecond)
	start := time.Now()
	for range 64 {
		c.Add(64 << 10) // 4 MiB in all
	}
	elapsed := time.Since(start)
	assert.Assert(t, elapsed >= 80*time.Millisecond, "4 MiB took %s", elapsed)
	assert.Assert(t, elapsed < 2*time.Second, "4 MiB took %s", elapsed)
	// One large piece moves the count gradually.
	c = &progress.Counter{}
	c.SetDelayPerMiB(30 * time.Millisecond)
	added := make(chan struct{})
	go func() { c.Add(8 << 20); close(added) }()
	time.Sleep(100 * time.Millisecond)
	assert.Assert(t, c.Done() > 0 && c.Done() < 8<<20, "done %d while adding 8 MiB", c.Done())
	<-added
	assert.Equal(t, c.Done(), int64(8<<20))
	c.SetDelayPerMiB(0)
	start = time.Now()
	c.Add(100 << 20)
	assert.Assert(t, time.Since(start) < 50*time.Millisecond)
}

func TestProgressFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "progress.json")
	c := &progress.Counter{}
	c.SetTotal(1000)
	w := &progress.FileWriter{Path: path, Counter: c, Interval: 10 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	read := func() progress.Snapshot {
		data, err := os.ReadFile(path)
		assert.NilError(t, err)
		var s progress.Snapshot
		assert.NilError(t, json.Unmarshal(data, &s))
		return s
	}
	c.Add(500)
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := os.Stat(path); err == nil && read().BytesDone == 500 {
			break
		}
		assert.Assert(t, time.Now().Before(deadline), "progress file never showed 500 bytes")
		time.Sleep(5 * time.Millisecond)
	}
	assert.DeepEqual(t, read(), progress.Snapshot{Phase: "Running", BytesDone: 500, BytesTotal: 1000, Percent: "50.00%"})
	cancel()
	assert.NilError(t, <-done)
	assert.NilError(t, w.WriteFinal(true))
	assert.DeepEqual(t, read(), progress.Snapshot{Phase: "Succeeded", BytesDone: 500, BytesTotal: 1000, Percent: "100.00%"})
	assert.NilError(t, w.WriteFinal(false))
	assert.Equal(t, read().Phase, "Failed")
}
