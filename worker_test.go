package worker_test

import (
	"context"
	"database/sql"
	"errors"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/sqlworker/worker"
	"github.com/sqlworker/worker/internal/workertest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// MustParseConfig returns the config of yaml with its SQLite database in
// tb.TempDir().
func MustParseConfig(tb testing.TB, yaml string) *worker.Config {
	tb.Helper()
	cfg, err := worker.ParseConfig([]byte(yaml))
	if err != nil {
		tb.Fatal(err)
	}
	if !cfg.Postgres() { // New refuses a path beside a URL, as ParseConfig does
		cfg.DBPath = filepath.Join(tb.TempDir(), "worker.db")
	}
	return cfg
}

// MustNewWorker returns a Worker on cfg with its metrics in a new registry,
// closed at cleanup.
func MustNewWorker(tb testing.TB, cfg *worker.Config) (*worker.Worker, *prometheus.Registry) {
	tb.Helper()
	reg := prometheus.NewRegistry()
	w, err := worker.New(worker.Options{Config: cfg, Registerer: reg})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := w.Close(context.Background()); err != nil {
			tb.Error(err)
		}
	})
	return w, reg
}

// signalJob returns a Go job that returns rows and then signals on the
// channel, once per run, without blocking.
func signalJob(rows int64, err error) (worker.Func, <-chan struct{}) {
	ran := make(chan struct{}, 1)
	return func(ctx context.Context, db *sql.DB) (int64, error) {
		defer func() {
			select {
			case ran <- struct{}{}:
			default:
			}
		}()
		if e := db.PingContext(ctx); e != nil {
			return 0, e
		}
		return rows, err
	}, ran
}

// wait waits for a signal on ch, for at most 30 s.
func wait(tb testing.TB, ch <-chan struct{}, what string) {
	tb.Helper()
	select {
	case <-ch:
	case <-time.After(30 * time.Second):
		tb.Fatalf("no %s within 30 s", what)
	}
}

// runs returns the job's rows in job_runs as "result rows_affected".
func runs(tb testing.TB, path, job string) []string {
	tb.Helper()
	db := workertest.OpenDB(tb, path, "mode=ro")
	return workertest.Strings(tb, db, "SELECT result || ' ' || rows_affected FROM job_runs WHERE job = ? ORDER BY id", job)
}

// Ensure a Go job runs on its schedule through the whole chain: job_runs,
// worker_job_runs_total, then a graceful Close.
func TestWorker_Run(t *testing.T) {
	cfg := MustParseConfig(t, workertest.BuiltinsOff)
	w, reg := MustNewWorker(t, cfg)
	fn, ran := signalJob(3, nil)
	if err := w.Register("touch", "* * * * * *", fn); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- w.Run(ctx) }()
	wait(t, w.Ready(), "Ready")
	wait(t, ran, "run")
	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("Run: got %v, want nil", err)
	}
	got := runs(t, cfg.DBPath, "touch")
	if len(got) == 0 || got[0] != "success 3" {
		t.Fatalf("job_runs: got %v, want success 3 first", got)
	}
	n := sum(t, reg, "worker_job_runs_total", map[string]string{"job_name": "touch", "result": "success"})
	if got, want := n, float64(len(got)); got != want {
		t.Fatalf("worker_job_runs_total: got %v, want %v", got, want)
	}
}

// Ensure Register refuses what it cannot run, with an error naming the job.
func TestWorker_Register(t *testing.T) {
	cfg := MustParseConfig(t, "jobs:\n  - {name: rollup, schedule: '@hourly', sql: SELECT 1}\n")
	w, _ := MustNewWorker(t, cfg)
	fn, _ := signalJob(0, nil)
	if err := w.Register("expire", "@every 1m", fn); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, job, spec string
		fn              worker.Func
		is              error
		want            string
	}{
		{"Twice", "expire", "@hourly", fn, worker.ErrDuplicateJob, `worker: job "expire": duplicate job name (registered twice)`},
		{"Builtin", "heartbeat", "@hourly", fn, worker.ErrDuplicateJob, `worker: job "heartbeat": duplicate job name (also builtin.heartbeat of the config)`},
		{"SQLJob", "rollup", "@hourly", fn, worker.ErrDuplicateJob, `worker: job "rollup": duplicate job name (also jobs[0] of the config)`},
		{"BadSchedule", "bad", "61 * * * *", fn, nil, `worker: job "bad": invalid schedule "61 * * * *": end of range (61) above maximum (59): 61`},
		{"NeverFires", "never", "0 0 30 2 *", fn, nil, `worker: job "never": invalid schedule "0 0 30 2 *"`},
		{"BadName", "Expire", "@hourly", fn, nil, `worker: job name: "Expire" must be lower case letters, digits and _, starting with a letter, at most 63 characters`},
		{"NilFunc", "nil", "@hourly", nil, nil, `worker: job "nil": nil func`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := w.Register(tc.job, tc.spec, tc.fn)
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("got %v, want %s", err, tc.want)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Fatalf("got %v, want %v", err, tc.is)
			}
		})
	}
	t.Run("AfterStart", func(t *testing.T) {
		if err := w.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		err := w.Register("late", "@hourly", fn)
		if !errors.Is(err, worker.ErrStarted) || !strings.Contains(err.Error(), `"late"`) {
			t.Fatalf("got %v, want %v naming late", err, worker.ErrStarted)
		}
	})
}

// Ensure a config entry with no sql reschedules, re-times or disables the
// Go job of its name, and names its field when there is none.
func TestWorker_GoJobEntry(t *testing.T) {
	cfg := MustParseConfig(t, workertest.BuiltinsOff+`
jobs:
  - {name: hourly, schedule: '@every 2h', timeout: 5s}
  - {name: paused, enabled: false}
`)
	w, _ := MustNewWorker(t, cfg)
	fn, _ := signalJob(0, nil)
	for _, name := range []string{"hourly", "paused", "plain"} {
		if err := w.Register(name, "@hourly", fn, worker.WithTimeout(time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	list, err := w.Jobs()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, j := range list {
		if j.Kind == worker.KindGo {
			got = append(got, strings.Join([]string{j.Name, j.Spec, j.Timeout.String(), map[bool]string{true: "on", false: "off"}[j.Enabled]}, " "))
		}
	}
	want := []string{"hourly @every 2h 5s on", "paused @hourly 1s off", "plain @hourly 1s on"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("got %q, want %q", got, want)
	}

	t.Run("Unknown", func(t *testing.T) {
		cfg := MustParseConfig(t, "jobs:\n  - {name: nightly, schedule: '@daily'}\n")
		w, _ := MustNewWorker(t, cfg)
		err := w.Start(context.Background())
		if !errors.Is(err, worker.ErrNoGoJob) || err.Error() != "jobs[0].sql: must not be empty" {
			t.Fatalf("got %v, want jobs[0].sql: must not be empty", err)
		}
	})
}

// Ensure a Go job gets the chain of a SQL job: a panic is recovered as a
// result of its own, and a run is bounded by its timeout.
func TestWorker_Chain(t *testing.T) {
	cfg := MustParseConfig(t, workertest.BuiltinsOff)
	w, reg := MustNewWorker(t, cfg)
	panicked, timedOut := make(chan struct{}, 1), make(chan struct{}, 1)
	signal := func(ch chan struct{}) {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	if err := w.Register("boom", "* * * * * *", func(context.Context, *sql.DB) (int64, error) {
		defer signal(panicked)
		panic("boom")
	}); err != nil {
		t.Fatal(err)
	}
	if err := w.Register("slow", "* * * * * *", func(ctx context.Context, _ *sql.DB) (int64, error) {
		defer signal(timedOut)
		<-ctx.Done()
		return 0, ctx.Err()
	}, worker.WithTimeout(10*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if err := w.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	wait(t, panicked, "panic")
	wait(t, timedOut, "timeout")
	// Stop returns once the runs are recorded.
	if err := w.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	for job, want := range map[string]string{"boom": "panic", "slow": "timeout"} {
		if got := runs(t, cfg.DBPath, job); len(got) == 0 || got[0] != want+" 0" {
			t.Errorf("%s: job_runs got %v, want %s 0 first", job, got, want)
		}
		if got := sum(t, reg, "worker_job_runs_total", map[string]string{"job_name": job, "result": want}); got < 1 {
			t.Errorf("%s: worker_job_runs_total{result=%q}: got %v, want at least 1", job, want, got)
		}
	}
}

// Ensure Stop and Close are safe before Start and twice, and Start after
// Stop says so.
func TestWorker_Close(t *testing.T) {
	w, _ := MustNewWorker(t, MustParseConfig(t, ""))
	for i := range 2 {
		if err := w.Stop(context.Background()); err != nil {
			t.Fatalf("Stop %d: got %v, want nil", i, err)
		}
		if err := w.Close(context.Background()); err != nil {
			t.Fatalf("Close %d: got %v, want nil", i, err)
		}
	}
	if err := w.Start(context.Background()); !errors.Is(err, worker.ErrStopped) {
		t.Fatalf("Start: got %v, want %v", err, worker.ErrStopped)
	}
}

// Ensure Handler serves /readyz from the worker's lifecycle (not ready
// after Open, ready after Start, not ready after Stop) and the metrics of
// the registry.
func TestWorker_Handler(t *testing.T) {
	w, reg := MustNewWorker(t, MustParseConfig(t, workertest.BuiltinsOff))
	h, err := w.Handler(worker.HandlerOptions{Gatherer: reg})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	status := func(path string) int {
		resp, err := srv.Client().Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if err := w.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, want := status("/readyz"), 503; got != want {
		t.Fatalf("/readyz before Start: got %v, want %v", got, want)
	}
	// Open registered every series: a scrape before Start sees them.
	if got := sum(t, reg, "worker_db_handles_open", nil); got != 1 {
		t.Fatalf("worker_db_handles_open after Open: got %v, want 1", got)
	}
	if err := w.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]int{"/readyz": 200, "/healthz": 200, "/metrics": 200} {
		if got := status(path); got != want {
			t.Errorf("%s: got %v, want %v", path, got, want)
		}
	}
	if err := w.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, want := status("/readyz"), 503; got != want {
		t.Fatalf("/readyz after Stop: got %v, want %v", got, want)
	}
}

// sum adds the values of the series of name whose labels include match.
func sum(tb testing.TB, reg prometheus.Gatherer, name string, match map[string]string) float64 {
	tb.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return workertest.Sum(mf, match)
		}
	}
	return 0
}
