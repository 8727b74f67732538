package worker_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sqlworker/worker"
	"github.com/sqlworker/worker/internal/web"
	"github.com/sqlworker/worker/internal/workertest"
)

// reloadJobs is a config with the SQL jobs a and b, or as given.
func reloadJobs(jobs string) string {
	return workertest.BuiltinsOff + "jobs:\n" + jobs
}

const (
	jobA  = "  - {name: a, schedule: \"@hourly\", sql: \"CREATE TABLE IF NOT EXISTS t (x); INSERT INTO t VALUES (1)\"}\n"
	jobA2 = "  - {name: a, schedule: \"@daily\", sql: \"CREATE TABLE IF NOT EXISTS t (x); INSERT INTO t VALUES (1), (2)\"}\n"
	jobB  = "  - {name: b, schedule: \"@hourly\", sql: \"SELECT 1\"}\n"
	jobC  = "  - {name: c, schedule: \"@hourly\", sql: \"SELECT 1\"}\n"
)

// names returns the enabled jobs of w, as "name spec" joined by commas.
func names(tb testing.TB, w *worker.Worker) string {
	tb.Helper()
	list, err := w.Jobs()
	if err != nil {
		tb.Fatal(err)
	}
	var out []string
	for _, j := range list {
		if j.Enabled {
			out = append(out, j.Name+" "+j.Spec)
		}
	}
	return strings.Join(out, ",")
}

// Ensure Reload swaps the jobs of a started worker (a changed, b removed,
// c added) without reopening the database, keeps and names the settings
// that need a restart, and refuses a bad config with the field's error
// while the old config keeps running; the reload metrics say each outcome.
func TestWorker_Reload(t *testing.T) {
	cfg := MustParseConfig(t, reloadJobs(jobA+jobB))
	var logs workertest.SyncBuffer
	reg := prometheus.NewRegistry()
	w, err := worker.New(worker.Options{Config: cfg, Registerer: reg, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close(context.Background())
	srv := mustAdminServer(t, w, reg)
	if err := w.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, want := sum(t, reg, "worker_config_last_reload_successful", nil), 1.0; got != want {
		t.Fatalf("last_reload_successful at start: got %v, want %v", got, want)
	}
	startTS := sum(t, reg, "worker_config_last_reload_success_timestamp_seconds", nil)
	if startTS == 0 {
		t.Fatal("last_reload_success_timestamp_seconds at start: got 0, want the start")
	}

	next := MustParseConfig(t, reloadJobs(jobA2+jobC))
	next.BusyTimeout *= 2 // and next.DBPath is another file: both need a restart
	if err := w.Reload(func() (*worker.Config, error) { return next, nil }); err != nil {
		t.Fatal(err)
	}
	if got, want := names(t, w), "a @daily,c @hourly"; got != want {
		t.Fatalf("jobs after reload: got %q, want %q", got, want)
	}
	var rec web.RunRecord
	if got, want := call(t, srv, "POST", "/api/v1/jobs/a/run", &rec), 200; got != want {
		t.Fatalf("run a: got %d, want %d", got, want)
	}
	if got, want := rec.RowsAffected, int64(2); got != want {
		t.Fatalf("run of a: got %d rows, want %d (its new SQL)", got, want)
	}
	if got, want := call(t, srv, "POST", "/api/v1/jobs/b/run", nil), 404; got != want {
		t.Fatalf("run of removed b: got %d, want %d", got, want)
	}
	if got, want := call(t, srv, "POST", "/api/v1/jobs/c/run", nil), 200; got != want {
		t.Fatalf("run of added c: got %d, want %d", got, want)
	}
	if got, want := strings.Join(runs(t, cfg.DBPath, "a"), ","), "success 2"; got != want {
		t.Fatalf("job_runs of a in the old database file: got %q, want %q", got, want)
	}
	if got, want := sum(t, reg, "worker_db_init_calls_total", map[string]string{"result": "opened"}), 1.0; got != want {
		t.Fatalf("init_calls_total{opened}: got %v, want %v", got, want)
	}
	if got := sum(t, reg, "worker_config_last_reload_success_timestamp_seconds", nil); got < startTS {
		t.Fatalf("last_reload_success_timestamp_seconds: got %v, want ≥ %v", got, startTS)
	}
	if out := logs.String(); !strings.Contains(out, "settings=\"[database.path database.busy_timeout]\"") {
		t.Fatalf("log: want the restart settings named, got\n%s", out)
	}

	for _, tc := range []struct {
		name, yml, want string
	}{
		{"bad schedule", reloadJobs(jobA + "  - {name: d, schedule: \"@sometimes\", sql: \"SELECT 1\"}\n"), "jobs[1].schedule"},
		{"unknown field", reloadJobs(jobA + "  - {name: d, schedule: \"@hourly\", sql: \"SELECT 1\", retry: 3}\n"), "retry"},
		{"no Go job", reloadJobs(jobA + "  - {name: d}\n"), "jobs[1]"},
		{"engine switch", "database:\n  url: postgres://localhost/db\n" + reloadJobs(jobA), "database.url: cannot switch"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := strings.Count(logs.String(), "\n")
			err := w.Reload(func() (*worker.Config, error) { return worker.ParseConfig([]byte(tc.yml)) })
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("reload: got %v, want an error naming %s", err, tc.want)
			}
			if got, want := sum(t, reg, "worker_config_last_reload_successful", nil), 0.0; got != want {
				t.Fatalf("last_reload_successful: got %v, want %v", got, want)
			}
			if got, want := names(t, w), "a @daily,c @hourly"; got != want {
				t.Fatalf("jobs after a refused reload: got %q, want %q", got, want)
			}
			lines := strings.Split(strings.TrimSpace(logs.String()), "\n")[before:]
			if len(lines) != 1 || !strings.Contains(lines[0], "level=ERROR") || !strings.Contains(lines[0], tc.want) {
				t.Fatalf("log: got %q, want one error line naming %s", lines, tc.want)
			}
		})
	}
	if err := w.Reload(func() (*worker.Config, error) { return next, nil }); err != nil {
		t.Fatal(err)
	}
	if got, want := sum(t, reg, "worker_config_last_reload_successful", nil), 1.0; got != want {
		t.Fatalf("last_reload_successful after a good reload: got %v, want %v", got, want)
	}

	if err := w.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := w.Reload(func() (*worker.Config, error) { return next, nil }); !errors.Is(err, worker.ErrStopped) {
		t.Fatalf("reload after Stop: got %v, want %v", err, worker.ErrStopped)
	}
}

// Ensure concurrent reloads are serialised: run under -race, each of them
// applies, and the jobs are those of one of the configs.
func TestWorker_Reload_Concurrent(t *testing.T) {
	w, reg := MustNewWorker(t, MustParseConfig(t, reloadJobs(jobA)))
	if err := w.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	configs := []string{jobA + jobB, jobA2 + jobC}
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := range 20 {
		wg.Go(func() {
			errs <- w.Reload(func() (*worker.Config, error) { return worker.ParseConfig([]byte(reloadJobs(configs[i%2]))) })
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := names(t, w); got != "a @hourly,b @hourly" && got != "a @daily,c @hourly" {
		t.Fatalf("jobs: got %q, want those of one config", got)
	}
	if got, want := sum(t, reg, "worker_db_init_calls_total", map[string]string{"result": "opened"}), 1.0; got != want {
		t.Fatalf("init_calls_total{opened}: got %v, want %v", got, want)
	}
}

// Ensure HandlerOptions.Reload serves POST and PUT /-/reload: 200 once
// applied, 500 with the error for a bad config, 405 for GET; without it
// the path is not served.
func TestWorker_Handler_Reload(t *testing.T) {
	w, reg := MustNewWorker(t, MustParseConfig(t, reloadJobs(jobA)))
	yml := reloadJobs(jobA + jobB)
	h, err := w.Handler(worker.HandlerOptions{Gatherer: reg, Reload: func() (*worker.Config, error) {
		return worker.ParseConfig([]byte(yml))
	}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	if err := w.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	send := func(method string) (int, string) {
		req, err := http.NewRequest(method, srv.URL+"/-/reload", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for method, want := range map[string]int{"POST": 200, "PUT": 200, "GET": 405} {
		if got, _ := send(method); got != want {
			t.Errorf("%s /-/reload: got %d, want %d", method, got, want)
		}
	}
	if got, want := names(t, w), "a @hourly,b @hourly"; got != want {
		t.Fatalf("jobs after /-/reload: got %q, want %q", got, want)
	}
	yml = reloadJobs(jobA + "  - {name: b, schedule: \"@sometimes\", sql: \"SELECT 1\"}\n")
	code, body := send("POST")
	if code != 500 || !strings.Contains(body, "jobs[1].schedule") {
		t.Fatalf("POST /-/reload of a bad config: got %d %q, want 500 naming jobs[1].schedule", code, body)
	}

	plain, err := w.Handler(worker.HandlerOptions{Gatherer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	srv2 := httptest.NewServer(plain)
	defer srv2.Close()
	resp, err := srv2.Client().Post(srv2.URL+"/-/reload", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got, want := resp.StatusCode, 404; got != want {
		t.Fatalf("POST /-/reload without Reload: got %d, want %d", got, want)
	}
}
