//go:build load

package reliability_test

import (
	"fmt"
	"math"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/sqlworker/worker/internal/workertest"
)

// The load: LoadJobs SQL jobs, each every second, on one database.
const (
	LoadJobs            = 100
	DefaultLoadDuration = 2 * time.Minute
	loadMaxP99          = 100 * time.Millisecond
	loadPoolSize        = 4 // database.max_open_conns, the default
)

func loadConfig() string {
	var b strings.Builder
	b.WriteString("history:\n  retention: 1h\njobs:\n")
	for i := range LoadJobs {
		name := fmt.Sprintf("load_%03d", i)
		fmt.Fprintf(&b, `  - name: %s
    schedule: "* * * * * *"
    timeout: 10s
    sql: |
      CREATE TABLE IF NOT EXISTS load_events (job TEXT NOT NULL, at TEXT NOT NULL);
      INSERT INTO load_events VALUES ('%s', strftime('%%Y-%%m-%%dT%%H:%%M:%%fZ'));
`, name, name)
	}
	return b.String()
}

// histogram adds up the load jobs' worker_job_start_delay_seconds buckets.
type histogram struct {
	count  uint64
	bounds []float64
	cum    []uint64 // cumulative counts per bound
}

func loadHistogram(mf *dto.MetricFamily) histogram {
	var h histogram
	for _, m := range mf.GetMetric() {
		if !strings.HasPrefix(label(m, "job_name"), "load_") {
			continue
		}
		hist := m.GetHistogram()
		if h.bounds == nil {
			for _, b := range hist.GetBucket() {
				h.bounds = append(h.bounds, b.GetUpperBound())
			}
			h.cum = make([]uint64, len(h.bounds))
		}
		h.count += hist.GetSampleCount()
		for i, b := range hist.GetBucket() {
			h.cum[i] += b.GetCumulativeCount()
		}
	}
	return h
}

func (h histogram) minus(o histogram) histogram {
	out := histogram{count: h.count - o.count, bounds: h.bounds, cum: make([]uint64, len(h.cum))}
	for i := range h.cum {
		out.cum[i] = h.cum[i] - o.cum[i]
	}
	return out
}

// quantile interpolates linearly within the bucket, as histogram_quantile.
func (h histogram) quantile(q float64) float64 {
	rank := q * float64(h.count)
	lower, below := 0.0, uint64(0)
	for i, b := range h.bounds {
		if float64(h.cum[i]) >= rank {
			in := h.cum[i] - below
			if in == 0 {
				return b
			}
			return lower + (b-lower)*(rank-float64(below))/float64(in)
		}
		lower, below = b, h.cum[i]
	}
	return math.Inf(1)
}

// atMost returns the share of observations at or below bound, which must be
// a bucket boundary.
func (h histogram) atMost(bound float64) float64 {
	for i, b := range h.bounds {
		if b == bound {
			return float64(h.cum[i]) / float64(h.count)
		}
	}
	return math.NaN()
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// Ensure 100 SQL jobs a second on one database for LOAD_DURATION (default
// two minutes) run without a single SQLITE_BUSY, within the pool, and on
// time: worker_job_start_delay_seconds p99 ≤ 100 ms. CPU and RSS are
// recorded; LOAD_REPORT names a file for the figures.
func TestLoad(t *testing.T) {
	duration := DefaultLoadDuration
	if v := os.Getenv("LOAD_DURATION"); v != "" {
		var err error
		if duration, err = time.ParseDuration(v); err != nil {
			t.Fatalf("LOAD_DURATION: %v", err)
		}
	}
	w := StartWorker(t, workertest.Options{Config: loadConfig(), LogLevel: "info"})
	// Skip the first partial second, then take the baseline.
	w.WaitFor(t, "the first load runs", 30*time.Second, func() bool {
		return workertest.Sum(w.Scrape(t)["worker_job_runs_total"], map[string]string{"job_name": "load_000"}) >= 2
	})
	base := w.Scrape(t)
	start := time.Now()

	var maxOpen, maxInUse, maxDriverConns, maxRSS, maxWait float64
	// Off the second boundaries, where the runs start.
	tick := time.NewTicker(237 * time.Millisecond)
	defer tick.Stop()
	for time.Since(start) < duration {
		<-tick.C
		if w.Exited() {
			t.Fatalf("worker exited: %v", w.Err())
		}
		mfs := w.Scrape(t)
		maxOpen = max(maxOpen, workertest.Sum(mfs["go_sql_open_connections"], nil))
		maxInUse = max(maxInUse, workertest.Sum(mfs["go_sql_in_use_connections"], nil))
		maxDriverConns = max(maxDriverConns, workertest.Sum(mfs["worker_db_connections_open"], nil))
		maxRSS = max(maxRSS, workertest.Sum(mfs["process_resident_memory_bytes"], nil))
		maxWait = workertest.Sum(mfs["go_sql_wait_count_total"], nil) - workertest.Sum(base["go_sql_wait_count_total"], nil)
	}
	end := w.Scrape(t)
	elapsed := time.Since(start)

	results := map[string]float64{}
	for _, r := range []string{"success", "failure", "skipped", "panic", "timeout", "cancelled"} {
		for i := range LoadJobs {
			job := fmt.Sprintf("load_%03d", i)
			results[r] += runs(end, job, r) - runs(base, job, r)
		}
	}
	delay := loadHistogram(end["worker_job_start_delay_seconds"]).minus(loadHistogram(base["worker_job_start_delay_seconds"]))
	p50, p99, p999 := delay.quantile(0.5), delay.quantile(0.99), delay.quantile(0.999)
	within := delay.atMost(loadMaxP99.Seconds())
	cpu := workertest.Sum(end["process_cpu_seconds_total"], nil) - workertest.Sum(base["process_cpu_seconds_total"], nil)
	rss := workertest.Sum(end["process_resident_memory_bytes"], nil)
	maxRSS = max(maxRSS, rss)

	if code, _ := w.Stop(t, 2*time.Minute); code != 0 {
		t.Errorf("exit code: got %d, want 0", code)
	}
	d := workertest.OpenDB(t, w.DBPath, "mode=ro")
	var busy, recorded int
	err := d.QueryRow(`SELECT count(*) FILTER (WHERE error LIKE '%database is locked%' OR error LIKE '%busy%'), count(*)
		FROM job_runs WHERE job LIKE 'load_%'`).Scan(&busy, &recorded)
	if err != nil {
		t.Fatal(err)
	}

	report := fmt.Sprintf(`| figure | value |
|---|---|
| duration | %s |
| jobs × rate | %d SQL jobs, each every second (%d runs/s) |
| runs measured | %.0f success, %.0f failure, %.0f skipped, %.0f timeout (%.0f expected) |
| runs failed with SQLITE_BUSY (job_runs of the whole test) | %d of %d recorded |
| pool size (max_open_conns) | %d |
| go_sql_open_connections, max | %.0f |
| go_sql_in_use_connections, max | %.0f |
| worker_db_connections_open, max | %.0f |
| waits for a pooled connection | %.0f |
| start delay p50 / p99 / p99.9 | %.1f ms / %.1f ms / %.1f ms |
| runs started within 100 ms | %.3f%% |
| CPU | %.2f s in %s = %.0f%% of one core |
| RSS at the end / max | %.1f MiB / %.1f MiB |
| machine | %d CPUs (GOMAXPROCS), %s/%s, %s |
`, elapsed.Round(time.Second), LoadJobs, LoadJobs,
		results["success"], results["failure"], results["skipped"], results["timeout"], float64(LoadJobs)*elapsed.Seconds(),
		busy, recorded, loadPoolSize, maxOpen, maxInUse, maxDriverConns, maxWait,
		p50*1000, p99*1000, p999*1000, within*100,
		cpu, elapsed.Round(time.Second), 100*cpu/elapsed.Seconds(),
		rss/(1<<20), maxRSS/(1<<20), runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, runtime.Version())
	t.Logf("load figures:\n%s", report)
	if path := os.Getenv("LOAD_REPORT"); path != "" {
		if err := os.WriteFile(path, []byte(report), 0o644); err != nil {
			t.Error(err)
		}
	}

	if busy != 0 {
		t.Errorf("runs failed with SQLITE_BUSY: got %d, want 0", busy)
	}
	for _, r := range []string{"failure", "panic", "timeout", "cancelled"} {
		if results[r] != 0 {
			t.Errorf("load runs with result %s: got %.0f, want 0", r, results[r])
		}
	}
	if maxOpen > loadPoolSize || maxDriverConns > loadPoolSize {
		t.Errorf("connections: got max %.0f pooled, %.0f on the driver, want at most %d", maxOpen, maxDriverConns, loadPoolSize)
	}
	if p99 > loadMaxP99.Seconds() || within < 0.99 {
		t.Errorf("start delay: got p99 %.1f ms (%.2f%% within 100 ms), want p99 ≤ 100 ms", p99*1000, within*100)
	}
	if got, want := delay.count, uint64(float64(LoadJobs)*elapsed.Seconds()*0.95); got < want {
		t.Errorf("runs measured: got %d, want ≥ %d", got, want)
	}
}
