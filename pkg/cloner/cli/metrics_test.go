package cli_test

import (
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"gotest.tools/v3/assert"

	"github.com/datavolume/datavolume/pkg/cloner/internal/testenv"
)

// scraper polls a job's /metrics until stopped and keeps every value of
// one series it saw.
type scraper struct {
	stop   chan struct{}
	done   sync.WaitGroup
	mu     sync.Mutex
	values []float64
	bodies []string
}

func scrape(t *testing.T, port int, series *regexp.Regexp) *scraper {
	t.Helper()
	s := &scraper{stop: make(chan struct{})}
	s.done.Add(1)
	go func() {
		defer s.done.Done()
		client := &http.Client{Timeout: time.Second}
		for {
			select {
			case <-s.stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
			if err != nil {
				continue // not up yet, or gone
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			s.mu.Lock()
			s.bodies = append(s.bodies, string(body))
			if m := series.FindStringSubmatch(string(body)); m != nil {
				v, err := strconv.ParseFloat(m[1], 64)
				if err == nil {
					s.values = append(s.values, v)
				}
			}
			s.mu.Unlock()
		}
	}()
	return s
}

func (s *scraper) finish() ([]float64, []string) {
	close(s.stop)
	s.done.Wait()
	return s.values, s.bodies
}

// TestMetricsScrape scrapes --metrics-address while jobs slowed down by
// the test-only --test-delay-per-mib run: CDI's progress metric, under
// CDI's name for the kind of job, climbs from 0 towards 100 and never goes
// back, next to our own metrics.
func TestMetricsScrape(t *testing.T) {
	images := t.TempDir()
	raw := filepath.Join(images, "disk.raw")
	testenv.WriteDisk(t, raw, 8<<20, 23)
	srv := testenv.FileServer(t, images, nil)
	secrets := t.TempDir()
	user := writeSecret(t, secrets, "user", srv.Username)
	pass := writeSecret(t, secrets, "pass", srv.Password)

	for _, tc := range []struct {
		name, metric string
		args         func(target string) []string
	}{
		{name: "import", metric: "kubevirt_cdi_import_progress_total", args: func(target string) []string {
			return []string{"import", "--url", srv.URL + "/disk.raw", "--target", target, "--ca-file", srv.CAFile,
				"--username-file", user, "--password-file", pass}
		}},
		{name: "clone", metric: "kubevirt_cdi_clone_progress_total", args: func(target string) []string {
			return []string{"clone", "--source", raw, "--target", target}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			port := testenv.FreePort(t)
			series := regexp.MustCompile(`(?m)^` + tc.metric + `\{ownerUID="dv-uid-1"\} (\S+)$`)
			s := scrape(t, port, series)
			target := filepath.Join(t.TempDir(), "disk.img")
			start := time.Now()
			r := runCLI(append(tc.args(target), "--metrics-address", fmt.Sprintf("127.0.0.1:%d", port),
				"--owner-uid", "dv-uid-1", "--test-delay-per-mib", "150ms")...)
			elapsed := time.Since(start)
			values, bodies := s.finish()
			assert.Equal(t, r.code, 0, r.stderr)
			testenv.AssertSameDisk(t, target, raw)
			// The copy of 8 MiB data bytes (4 MiB for the sparse clone)
			// was slowed down as asked.
			assert.Assert(t, elapsed >= 500*time.Millisecond, "took %s", elapsed)

			assert.Assert(t, len(values) >= 3, "scraped %d values of %s; last body:\n%s", len(values), tc.metric, last(bodies))
			var between bool
			for i, v := range values {
				assert.Assert(t, v >= 0 && v <= 100, "%s = %v", tc.metric, v)
				if i > 0 {
					assert.Assert(t, v >= values[i-1], "%s went back: %v", tc.metric, values)
				}
				between = between || (v > 0 && v < 100)
			}
			assert.Assert(t, between, "%s was seen between 0 and 100: %v", tc.metric, values)
			body := last(bodies)
			for _, want := range []string{"# TYPE " + tc.metric + " counter", `datavolume_cloner_progress_percent{ownerUID="dv-uid-1"}`,
				`datavolume_cloner_progress_bytes{ownerUID="dv-uid-1"}`, `datavolume_cloner_total_bytes{ownerUID="dv-uid-1"}`} {
				assert.Assert(t, regexp.MustCompile(regexp.QuoteMeta(want)).MatchString(body), "missing %q in\n%s", want, body)
			}
		})
	}
}

func last(bodies []string) string {
	if len(bodies) == 0 {
		return "(no scrape succeeded)"
	}
	return bodies[len(bodies)-1]
}
