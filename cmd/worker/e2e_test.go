package main_test

import (
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/sqlworker/worker/internal/jobs"
	"github.com/sqlworker/worker/internal/workertest"
)

// contract lists every metric docs/metrics.md promises.
var contract = []string{
	"go_sql_open_connections", "go_sql_in_use_connections", "go_sql_idle_connections",
	"go_sql_max_open_connections", "go_sql_wait_count_total", "go_sql_wait_duration_seconds_total",
	"go_sql_max_idle_closed_total", "go_sql_max_idle_time_closed_total", "go_sql_max_lifetime_closed_total",
	"process_open_fds", "process_max_fds", "process_resident_memory_bytes", "go_goroutines",
	"go_memstats_heap_inuse_bytes", "worker_build_info",
	"worker_db_init_calls_total", "worker_db_handles_open", "worker_db_handles_opened_total", "worker_db_handles_closed_total",
	"worker_db_connections_open", "worker_db_connections_opened_total", "worker_db_connections_closed_total",
	"worker_db_statements_open", "worker_db_process_handles_open", "worker_open_fds",
	"worker_db_size_bytes", "worker_db_wal_size_bytes", "worker_db_quick_check_ok", "worker_db_corrupt",
	"worker_job_runs_total", "worker_job_duration_seconds", "worker_job_start_delay_seconds", "worker_job_running",
	"worker_job_last_success_timestamp_seconds", "worker_job_next_run_timestamp_seconds", "worker_job_interval_seconds",
	"worker_job_history_pending", "worker_job_history_dropped_total",
	"worker_job_ticks_skipped_total", "worker_job_ticks_caught_up_total", "worker_job_retries_total", "worker_job_retries_given_up_total",
	"worker_job_duplicate_ticks", "worker_job_paused",
	"worker_config_last_reload_successful", "worker_config_last_reload_success_timestamp_seconds",
	"promhttp_metric_handler_requests_in_flight", "promhttp_metric_handler_requests_total",
}

// Ensure the built worker serves every contract metric, runs its jobs, keeps
// one handle, and passes promlint.
func TestWorker_EndToEnd(t *testing.T) {
	w := MustStartWorker(t, workertest.EverySecond)
	first := w.Scrape(t)
	w.WaitFor(t, "running jobs", waitLimit, func() bool {
		return workertest.Sum(w.Scrape(t)["worker_job_runs_total"], map[string]string{"result": "success"}) >=
			workertest.Sum(first["worker_job_runs_total"], map[string]string{"result": "success"})+12
	})
	mfs := w.Scrape(t)

	for _, name := range contract {
		if _, ok := mfs[name]; !ok {
			t.Errorf("metric %s: missing from /metrics", name)
		}
	}
	names := []string{"rollup"}
	for _, b := range jobs.BuiltinJobs {
		names = append(names, b.Name)
	}
	for _, job := range names {
		if got := workertest.Sum(mfs["worker_job_runs_total"], map[string]string{"job_name": job, "result": "success"}); got < 1 {
			t.Errorf("worker_job_runs_total{job_name=%q,result=\"success\"}: got %v, want ≥ 1", job, got)
		}
		if got := workertest.Sum(mfs["worker_job_runs_total"], map[string]string{"job_name": job, "result": "failure"}); got != 0 {
			t.Errorf("worker_job_runs_total{job_name=%q,result=\"failure\"}: got %v, want 0", job, got)
		}
	}
	for _, tc := range []struct {
		name  string
		match map[string]string
		want  float64
	}{
		{"worker_db_handles_open", nil, 1},
		{"worker_db_init_calls_total", map[string]string{"result": "opened"}, 1},
		{"worker_db_init_calls_total", map[string]string{"result": "failed"}, 0},
		{"worker_db_quick_check_ok", nil, 1},
		{"go_sql_max_open_connections", map[string]string{"db_name": "main"}, 4},
		{"worker_job_history_pending", nil, 0},
		{"worker_job_history_dropped_total", nil, 0},
	} {
		if got := workertest.Sum(mfs[tc.name], tc.match); got != tc.want {
			t.Errorf("%s%v: got %v, want %v", tc.name, tc.match, got, tc.want)
		}
	}
	if got, max := workertest.Sum(mfs["worker_db_connections_open"], nil), 4.0; got > max {
		t.Errorf("worker_db_connections_open: got %v, want at most %v", got, max)
	}
	for _, typ := range []string{"sqlite", "socket", "pipe", "anon_inode", "file", "other"} {
		if len(filter(mfs["worker_open_fds"], "type", typ)) != 1 {
			t.Errorf("worker_open_fds{type=%q}: missing", typ)
		}
	}
	if got := workertest.Sum(mfs["worker_open_fds"], map[string]string{"type": "sqlite"}); got < 3 {
		t.Errorf("worker_open_fds{type=\"sqlite\"}: got %v, want ≥ 3 (db, -wal, -shm)", got)
	}

	// The FD types add up to process_open_fds; a connection opening between
	// the two reads can make one scrape differ, so several get a chance.
	var fdsMatch bool
	for range 10 {
		m := w.Scrape(t)
		if workertest.Sum(m["worker_open_fds"], nil) == workertest.Sum(m["process_open_fds"], nil) {
			fdsMatch = true
			break
		}
	}
	if !fdsMatch {
		t.Errorf("workertest.Sum(worker_open_fds) never equalled process_open_fds in 10 scrapes")
	}

	var families []*dto.MetricFamily
	for _, mf := range mfs {
		families = append(families, mf)
	}
	problems, err := promlint.NewWithMetricFamilies(families).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}

	for path, want := range map[string]int{"/": 200, "/healthz": 200, "/readyz": 200, "/metrics": 200, "/debug/pprof/": 404, "/nope": 404} {
		if got := w.Status(path); got != want {
			t.Errorf("GET %s: got %d, want %d", path, got, want)
		}
	}
	if code, _ := w.Stop(t, waitLimit); code != 0 {
		t.Fatalf("exit code: got %d, want 0", code)
	}
}

func filter(mf *dto.MetricFamily, label, value string) []*dto.Metric {
	var out []*dto.Metric
	for _, m := range mf.GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == label && l.GetValue() == value {
				out = append(out, m)
			}
		}
	}
	return out
}

// Ensure a job running when SIGTERM arrives finishes within the grace
// period, is recorded, and the worker exits 0 leaving no WAL behind.
func TestWorker_Shutdown(t *testing.T) {
	// About a second of SQLite work per run, so SIGTERM lands mid-run.
	config := workertest.BuiltinsOff + `
scheduler:
  shutdown_grace: 30s
jobs:
  - name: slow
    schedule: "@every 1s"
    timeout: 60s
    sql: |
      CREATE TABLE IF NOT EXISTS counted (n);
      INSERT INTO counted
        WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 5000000)
        SELECT count(*) FROM c;
`
	w := MustStartWorker(t, config)
	w.WaitFor(t, "running slow", waitLimit, func() bool {
		return workertest.Sum(w.Scrape(t)["worker_job_running"], map[string]string{"job_name": "slow"}) == 1
	})
	if err := w.Cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	// While draining, the worker is not ready but still serves metrics.
	w.WaitFor(t, "draining", waitLimit, func() bool {
		select {
		case <-w.Done():
			return true
		default:
		}
		return w.Status("/readyz") == http.StatusServiceUnavailable
	})
	select {
	case <-w.Done():
	case <-time.After(60 * time.Second):
		t.Fatal("worker did not exit within 60 s")
	}
	if code := w.Cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("exit code: got %d, want 0\n%s", code, w.Logs())
	}
	if fi, err := os.Stat(w.DBPath + "-wal"); err == nil && fi.Size() != 0 {
		t.Errorf("-wal after exit: got %d bytes, want empty or gone", fi.Size())
	}
	d := workertest.OpenDB(t, w.DBPath, "mode=ro")
	var result string
	err := d.QueryRowContext(workertest.CtxTimeout(t, 5*time.Second),
		"SELECT result FROM job_runs WHERE job = 'slow' ORDER BY id DESC LIMIT 1").Scan(&result)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := result, "success"; got != want {
		t.Fatalf("last run of slow: got %s, want %s", got, want)
	}
	var rows int
	if err := d.QueryRow("SELECT count(*) FROM counted").Scan(&rows); err != nil || rows < 1 {
		t.Fatalf("rows written by the drained run: got %d (%v), want ≥ 1", rows, err)
	}
}

// Ensure --config.check prints the plan and exits 0 without opening the
// database.
func TestWorker_ConfigCheck(t *testing.T) {
	dir := t.TempDir()
	cfg := dir + "/worker.yml"
	if err := os.WriteFile(cfg, []byte(workertest.EverySecond), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := runWorker(t, "--config.file", cfg, "--db.path", dir+"/w.db", "--config.check")
	if err != nil {
		t.Fatalf("exit: %v\n%s", err, out)
	}
	for _, want := range []string{"config ok", "rollup", "* * * * * *", "quick_check"} {
		if !strings.Contains(out, want) {
			t.Errorf("output: missing %q in\n%s", want, out)
		}
	}
	if _, err := os.Stat(dir + "/w.db"); !os.IsNotExist(err) {
		t.Errorf("database: got %v, want not created", err)
	}
}

// Ensure --config.check prints the checkpoint mode and the history's row
// cap, the defaults and those a file sets.
func TestWorker_ConfigCheck_CheckpointAndRowCap(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, yml string
		want      []string
	}{
		{"defaults", "", []string{"checkpoint worker)", "history: retention 168h0m0s, max_rows_per_job none\n"}},
		{"set", "database:\n  checkpoint: external\nbuiltin:\n  wal_checkpoint: {enabled: false}\nhistory:\n  retention: 24h\n  max_rows_per_job: 500\n",
			[]string{"checkpoint external)", "history: retention 24h0m0s, max_rows_per_job 500\n"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := dir + "/" + tc.name + ".yml"
			if err := os.WriteFile(cfg, []byte(tc.yml), 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := runWorker(t, "--config.file", cfg, "--config.check")
			if err != nil {
				t.Fatalf("exit: %v\n%s", err, out)
			}
			for _, want := range tc.want {
				if !strings.Contains(out, want) {
					t.Errorf("output: missing %q in\n%s", want, out)
				}
			}
		})
	}
}

func runWorker(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newCmd(args...)
	var b strings.Builder
	cmd.Stdout, cmd.Stderr = &b, &b
	cmd.Stdin = nil
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return b.String(), err
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("worker %v did not exit within 30 s\n%s", args, b.String())
	}
	return "", nil
}

// Ensure the example config in the repository is valid.
func TestWorker_ExampleConfig(t *testing.T) {
	out, err := runWorker(t, "--config.file", "../../worker.example.yml", "--config.check")
	if err != nil {
		t.Fatalf("exit: %v\n%s", err, out)
	}
	for _, want := range []string{"expire_sessions", "nightly_rollup", "CRON_TZ=Europe/Berlin 30 2 * * *", "CATCH UP", "2 (backoff 1s)", "30s"} {
		if !strings.Contains(out, want) {
			t.Errorf("output: missing %q in\n%s", want, out)
		}
	}
}
