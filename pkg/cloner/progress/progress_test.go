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
	srv := httptest.NewServer(progress.Handler(c, "uid-1"))
	defer srv.Close()
	scrape := func() string {
		resp, err := srv.Client().Get(srv.URL + "/metrics")
		assert.NilError(t, err)
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		assert.NilError(t, err)
		return string(body)
	}
	assert.Assert(t, strings.Contains(scrape(), `datavolume_cloner_progress_percent{ownerUID="uid-1"} -1`))
	c.SetTotal(400)
	c.Add(100)
	body := scrape()
	for _, want := range []string{
		`datavolume_cloner_progress_percent{ownerUID="uid-1"} 25`,
		`datavolume_cloner_progress_bytes{ownerUID="uid-1"} 100`,
		`datavolume_cloner_total_bytes{ownerUID="uid-1"} 400`,
		"# TYPE datavolume_cloner_progress_percent gauge",
	} {
		assert.Assert(t, strings.Contains(body, want), "missing %q in\n%s", want, body)
	}
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
