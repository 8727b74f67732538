package worker_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sqlworker/worker"
	"github.com/sqlworker/worker/internal/web"
	"github.com/sqlworker/worker/internal/workertest"
)

// do sends method path to srv and decodes the JSON answer into v, if not
// mustAdminServer serves w's Handler with the admin API and the metrics of
// reg, until the test ends.
func mustAdminServer(tb testing.TB, w *worker.Worker, reg *prometheus.Registry) *httptest.Server {
	tb.Helper()
	h, err := w.Handler(worker.HandlerOptions{Gatherer: reg, EnableAdminAPI: true})
	if err != nil {
		tb.Fatal(err)
	}
	srv := httptest.NewServer(h)
	tb.Cleanup(srv.Close)
	return srv
}

// nil; it returns the status.
func do(srv *httptest.Server, method, path string, v any) (int, error) {
	req, err := http.NewRequest(method, srv.URL+path, nil)
	if err != nil {
		return 0, err
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if v != nil {
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			return resp.StatusCode, fmt.Errorf("%s %s: decode: %w", method, path, err)
		}
	}
	return resp.StatusCode, nil
}

// call is do failing the test on an error.
func call(tb testing.TB, srv *httptest.Server, method, path string, v any) int {
	tb.Helper()
	code, err := do(srv, method, path, v)
	if err != nil {
		tb.Fatal(err)
	}
	return code
}

// Ensure the admin API of Handler runs a job now through the chain: 503
// before Start, 200 with the record, 409 with a skipped record while the
// job runs, 404 for unknown and disabled jobs, 503 after Stop; and lists
// the jobs with their last run.
func TestAdminAPI_RunNow(t *testing.T) {
	cfg := MustParseConfig(t, workertest.BuiltinsOff+`
jobs:
  - {name: off, schedule: "@hourly", sql: "SELECT 1", enabled: false, catch_up: all, catch_up_limit: 4, retries: 2, retry_backoff: 5s, jitter: 90s}
`)
	w, reg := MustNewWorker(t, cfg)
	started, release := make(chan struct{}, 1), make(chan struct{})
	var releaseOnce sync.Once
	unblock := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(unblock) // before the worker's Close, should the test fail early
	err := w.Register("block", "@yearly", func(ctx context.Context, db *sql.DB) (int64, error) {
		started <- struct{}{}
		select {
		case <-release:
			return 3, db.PingContext(ctx)
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}, worker.WithTimeout(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	srv := mustAdminServer(t, w, reg)

	if err := w.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, want := call(t, srv, "POST", "/api/v1/jobs/block/run", nil), 503; got != want {
		t.Fatalf("run before Start: got %v, want %v", got, want)
	}
	if err := w.Start(context.Background()); err != nil {
		t.Fatal(err)
	}

	type answer struct {
		code int
		run  web.RunRecord
		err  error
	}
	first := make(chan answer, 1)
	go func() {
		var a answer
		a.code, a.err = do(srv, "POST", "/api/v1/jobs/block/run", &a.run)
		first <- a
	}()
	wait(t, started, "start of the run now")
	var skipped web.RunRecord
	if got, want := call(t, srv, "POST", "/api/v1/jobs/block/run", &skipped), 409; got != want {
		t.Fatalf("run while running: got %v, want %v", got, want)
	}
	if got, want := skipped.Result, "skipped"; got != want {
		t.Errorf("409 record result: got %v, want %v", got, want)
	}
	unblock()
	a := <-first
	if a.err != nil {
		t.Fatal(a.err)
	}
	if got, want := a.code, 200; got != want {
		t.Fatalf("run now: got %v, want %v", got, want)
	}
	r := a.run
	if r.Job != "block" || r.Result != "success" || r.RowsAffected != 3 || r.Error != "" {
		t.Errorf("run record: got %+v, want block success 3 rows", r)
	}
	if r.Attempt != 1 || r.JitterMS != 0 {
		t.Errorf("run record attempt and jitter_ms: got %d %d, want 1 0", r.Attempt, r.JitterMS)
	}
	if r.StartedAt == nil || r.EndedAt == nil || r.ScheduledAt == nil || r.EndedAt.Before(*r.StartedAt) {
		t.Fatalf("run record times: got %v %v %v, want scheduled, started, then ended", r.ScheduledAt, r.StartedAt, r.EndedAt)
	}
	if r.StartedAt != nil && r.StartedAt.Location() != time.UTC {
		t.Errorf("started_at zone: got %v, want UTC", r.StartedAt.Location())
	}
	if got, want := sum(t, reg, "worker_job_runs_total", map[string]string{"job_name": "block", "result": "success"}), 1.0; got != want {
		t.Errorf("worker_job_runs_total{block,success}: got %v, want %v", got, want)
	}
	if got, want := sum(t, reg, "worker_job_runs_total", map[string]string{"job_name": "block", "result": "skipped"}), 1.0; got != want {
		t.Errorf("worker_job_runs_total{block,skipped}: got %v, want %v", got, want)
	}

	var list struct{ Jobs []web.JobStatus }
	if got, want := call(t, srv, "GET", "/api/v1/jobs", &list), 200; got != want {
		t.Fatalf("GET /api/v1/jobs: got %v, want %v", got, want)
	}
	byName := make(map[string]web.JobStatus)
	for _, j := range list.Jobs {
		byName[j.Name] = j
	}
	b := byName["block"]
	if b.Kind != "go" || b.Schedule != "@yearly" || b.Timeout != "1m0s" || !b.Enabled || b.NextRun == nil {
		t.Errorf("job block: got %+v, want go @yearly 1m0s enabled with a next run", b)
	}
	if b.LastRun == nil || b.LastRun.Result != "success" || !b.LastRun.StartedAt.Equal(*r.StartedAt) {
		t.Errorf("job block last_run: got %+v, want the run now's record", b.LastRun)
	}
	if off := byName["off"]; off.Kind != "sql" || off.Enabled || off.NextRun != nil || off.LastRun != nil {
		t.Errorf("job off: got %+v, want sql, disabled, no next or last run", off)
	}
	// The settings in force: block's are the defaults, off's the config's.
	if got, want := [5]any{b.CatchUp, b.CatchUpLimit, b.Retries, b.RetryBackoff, b.Jitter}, [5]any{"skip", worker.DefaultCatchUpLimit, 0, worker.DefaultRetryBackoff.String(), "0s"}; got != want {
		t.Errorf("job block catch_up, catch_up_limit, retries, retry_backoff, jitter: got %v, want %v", got, want)
	}
	off := byName["off"]
	if got, want := [5]any{off.CatchUp, off.CatchUpLimit, off.Retries, off.RetryBackoff, off.Jitter}, [5]any{"all", 4, 2, "5s", "1m30s"}; got != want {
		t.Errorf("job off catch_up, catch_up_limit, retries, retry_backoff, jitter: got %v, want %v", got, want)
	}
	for _, name := range []string{"nope", "off"} {
		if got, want := call(t, srv, "POST", "/api/v1/jobs/"+name+"/run", nil), 404; got != want {
			t.Errorf("run %s: got %v, want %v", name, got, want)
		}
	}

	if err := w.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, want := call(t, srv, "POST", "/api/v1/jobs/block/run", nil), 503; got != want {
		t.Fatalf("run after Stop: got %v, want %v", got, want)
	}
	if got, want := runs(t, cfg.DBPath, "block"), []string{"skipped 0", "success 3"}; !slices.Equal(got, want) {
		t.Errorf("job_runs of block: got %v, want %v", got, want)
	}
}

// Ensure the admin API is not served unless asked for.
func TestAdminAPI_Disabled(t *testing.T) {
	w, reg := MustNewWorker(t, MustParseConfig(t, workertest.BuiltinsOff))
	h, err := w.Handler(worker.HandlerOptions{Gatherer: reg})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	if err := w.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ method, path string }{{"GET", "/api/v1/jobs"}, {"POST", "/api/v1/jobs/heartbeat/run"}} {
		if got, want := call(t, srv, tc.method, tc.path, nil), 404; got != want {
			t.Errorf("%s %s: got %v, want %v", tc.method, tc.path, got, want)
		}
	}
}
