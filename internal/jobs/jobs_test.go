package jobs_test

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/sqlworker/worker/internal/workertest"

	"github.com/sqlworker/worker/internal/db"
	"github.com/sqlworker/worker/internal/jobs"
	"github.com/sqlworker/worker/internal/schedule"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// setup returns a Scheduler over the given jobs, on a new database, with a
// registry holding its metrics. The scheduler is stopped at cleanup.
func setup(t *testing.T, cfg jobs.Config, js ...jobs.Job) (*jobs.Scheduler, *db.Handle, *prometheus.Registry) {
	t.Helper()
	h := workertest.MustOpenHandle(t)
	reg := prometheus.NewRegistry()
	cfg.DB, cfg.Registerer = h, reg
	s, err := jobs.New(cfg, js)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Stop(context.Background()) })
	return s, h, reg
}

func mustSchedule(t testing.TB, spec string) jobs.Job {
	t.Helper()
	sched, err := schedule.Parse(spec)
	if err != nil {
		t.Fatal(err)
	}
	return jobs.Job{Spec: spec, Schedule: sched, Timeout: 10 * time.Second}
}

func job(t testing.TB, name string, fn jobs.Func) jobs.Job {
	j := mustSchedule(t, "@hourly")
	j.Name, j.Func = name, fn
	return j
}

func runs(t testing.TB, reg prometheus.Gatherer, name string, result jobs.Result) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "worker_job_runs_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			var j, r string
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "job_name":
					j = l.GetValue()
				case "result":
					r = l.GetValue()
				}
			}
			if j == name && r == string(result) {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("worker_job_runs_total{job_name=%q,result=%q} not found", name, result)
	return 0
}

// history returns the results recorded for a job, oldest first.
func history(t testing.TB, h *db.Handle, name string) []string {
	t.Helper()
	return column(t, h, "result || ':' || rows_affected || ':' || error", name)
}

// column returns expr of a job's rows in job_runs, in id order.
func column(t testing.TB, h *db.Handle, expr, name string) []string {
	t.Helper()
	d, err := h.Init(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return workertest.Strings(t, d, "SELECT "+expr+" FROM job_runs WHERE job = ? ORDER BY id", name)
}

// Ensure a successful run is counted, timed and recorded with its rows.
func TestScheduler_RunOnce_Success(t *testing.T) {
	s, h, reg := setup(t, jobs.Config{}, job(t, "rollup", jobs.SQLFunc(`
		CREATE TABLE IF NOT EXISTS events (x);
		INSERT INTO events VALUES (1), (2), (3);
		DELETE FROM events WHERE x < 3;`)))
	r, err := s.RunOnce("rollup")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := r.Result, jobs.Success; got != want {
		t.Fatalf("result: got %s (%v), want %s", got, r.Err, want)
	}
	if got, want := r.RowsAffected, int64(5); got != want {
		t.Fatalf("rows affected: got %d, want %d (3 inserted + 2 deleted)", got, want)
	}
	if got, want := runs(t, reg, "rollup", jobs.Success), 1.0; got != want {
		t.Fatalf("runs_total{success}: got %v, want %v", got, want)
	}
	if got, want := strings.Join(history(t, h, "rollup"), ","), "success:5:"; got != want {
		t.Fatalf("history: got %q, want %q", got, want)
	}
	if _, err := s.RunOnce("nope"); !errors.Is(err, jobs.ErrUnknownJob) {
		t.Fatalf("unknown job: got %v, want %v", err, jobs.ErrUnknownJob)
	}
}

// Ensure a failing SQL job rolls back all its statements and is recorded.
func TestScheduler_RunOnce_FailureRollsBack(t *testing.T) {
	s, h, reg := setup(t, jobs.Config{}, job(t, "bad", jobs.SQLFunc(`
		CREATE TABLE IF NOT EXISTS u (x UNIQUE);
		INSERT INTO u VALUES (1);
		INSERT INTO u VALUES (1);`)))
	r, _ := s.RunOnce("bad")
	if got, want := r.Result, jobs.Failure; got != want {
		t.Fatalf("result: got %s, want %s", got, want)
	}
	if r.Err == nil || !strings.Contains(r.Err.Error(), "UNIQUE") {
		t.Fatalf("error: got %v, want a UNIQUE constraint failure", r.Err)
	}
	d, _ := h.Init(context.Background())
	var n int
	if err := d.QueryRow("SELECT count(*) FROM sqlite_schema WHERE name = 'u'").Scan(&n); err != nil || n != 0 {
		t.Fatalf("table u after rollback: got %d (%v), want 0", n, err)
	}
	if got, want := runs(t, reg, "bad", jobs.Failure), 1.0; got != want {
		t.Fatalf("runs_total{failure}: got %v, want %v", got, want)
	}
	if got := history(t, h, "bad"); len(got) != 1 || !strings.HasPrefix(got[0], "failure:0:") {
		t.Fatalf("history: got %q, want one failure", got)
	}
}

// Ensure a panic is recovered, counted and recorded, and the job runs again.
func TestScheduler_Panic(t *testing.T) {
	panicked := false
	s, h, reg := setup(t, jobs.Config{}, job(t, "boom", func(ctx context.Context, _ *sql.DB) (int64, error) {
		if !panicked {
			panicked = true
			panic("kaboom")
		}
		return 0, nil
	}))
	r, _ := s.RunOnce("boom")
	var pe *jobs.PanicError
	if got, want := r.Result, jobs.Panic; got != want || !errors.As(r.Err, &pe) || len(pe.Stack) == 0 {
		t.Fatalf("result: got %s (%v), want %s with a stack", got, r.Err, want)
	}
	r, _ = s.RunOnce("boom")
	if got, want := r.Result, jobs.Success; got != want {
		t.Fatalf("run after panic: got %s, want %s", got, want)
	}
	if got, want := runs(t, reg, "boom", jobs.Panic), 1.0; got != want {
		t.Fatalf("runs_total{panic}: got %v, want %v", got, want)
	}
	if got, want := strings.Join(history(t, h, "boom"), ","), "panic:0:panic: kaboom,success:0:"; got != want {
		t.Fatalf("history: got %q, want %q", got, want)
	}
}

// Ensure a run that starts while the previous one is going is skipped.
func TestScheduler_SkipIfStillRunning(t *testing.T) {
	started, release := make(chan struct{}), make(chan struct{})
	s, h, reg := setup(t, jobs.Config{}, job(t, "slow", func(ctx context.Context, _ *sql.DB) (int64, error) {
		close(started)
		<-release
		return 0, nil
	}))
	first := make(chan *jobs.Run)
	go func() {
		r, _ := s.RunOnce("slow")
		first <- r
	}()
	<-started
	r, _ := s.RunOnce("slow")
	if got, want := r.Result, jobs.Skipped; got != want {
		t.Fatalf("overlapping run: got %s, want %s", got, want)
	}
	close(release)
	if got, want := (<-first).Result, jobs.Success; got != want {
		t.Fatalf("first run: got %s, want %s", got, want)
	}
	if got, want := runs(t, reg, "slow", jobs.Skipped), 1.0; got != want {
		t.Fatalf("runs_total{skipped}: got %v, want %v", got, want)
	}
	if got, want := strings.Join(history(t, h, "slow"), ","), "skipped:0:previous run still running,success:0:"; got != want {
		t.Fatalf("history: got %q, want %q", got, want)
	}
}

// Ensure the job's timeout interrupts a long SQLite query and is recorded
// as a timeout.
func TestScheduler_Timeout(t *testing.T) {
	j := job(t, "forever", jobs.SQLFunc(`WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT max(x) FROM c`))
	j.Timeout = 200 * time.Millisecond
	s, h, reg := setup(t, jobs.Config{}, j)
	r, _ := s.RunOnce("forever")
	if got, want := r.Result, jobs.Timeout; got != want {
		t.Fatalf("result: got %s (%v), want %s", got, r.Err, want)
	}
	if got, want := runs(t, reg, "forever", jobs.Timeout), 1.0; got != want {
		t.Fatalf("runs_total{timeout}: got %v, want %v", got, want)
	}
	if got := history(t, h, "forever"); len(got) != 1 || !strings.HasPrefix(got[0], "timeout:0:timeout after 200ms") {
		t.Fatalf("history: got %q, want one timeout", got)
	}
}

// Ensure Stop is safe on a scheduler that never started, and twice.
func TestScheduler_Stop_NotStarted(t *testing.T) {
	s, _, _ := setup(t, jobs.Config{}, job(t, "a", jobs.SQLFunc("SELECT 1")))
	for range 2 {
		if err := s.Stop(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Start(); !errors.Is(err, jobs.ErrStopped) {
		t.Fatalf("Start after Stop: got %v, want %v", err, jobs.ErrStopped)
	}
}

// Ensure Stop lets a run finish within the grace period, cancels one that
// outlasts it, and records both.
func TestScheduler_Stop_Grace(t *testing.T) {
	started := make(chan struct{}, 2)
	finish := make(chan struct{})
	quick := job(t, "quick", func(ctx context.Context, _ *sql.DB) (int64, error) {
		started <- struct{}{}
		<-finish
		return 1, nil
	})
	stubborn := job(t, "stubborn", func(ctx context.Context, _ *sql.DB) (int64, error) {
		started <- struct{}{}
		<-ctx.Done() // runs until cancelled
		return 0, ctx.Err()
	})
	s, h, reg := setup(t, jobs.Config{ShutdownGrace: 300 * time.Millisecond, ForceTimeout: 5 * time.Second}, quick, stubborn)
	done := make(chan struct{})
	for _, name := range []string{"quick", "stubborn"} {
		go func() {
			s.RunOnce(name)
			done <- struct{}{}
		}()
	}
	<-started
	<-started
	stopped := make(chan error)
	go func() { stopped <- s.Stop(context.Background()) }()
	close(finish) // quick finishes inside the grace period
	if err := <-stopped; err != nil {
		t.Fatalf("Stop: %v", err)
	}
	<-done
	<-done
	if got, want := strings.Join(history(t, h, "quick"), ","), "success:1:"; got != want {
		t.Fatalf("quick history: got %q, want %q", got, want)
	}
	if got, want := strings.Join(history(t, h, "stubborn"), ","), "cancelled:0:context canceled"; got != want {
		t.Fatalf("stubborn history: got %q, want %q", got, want)
	}
	if got, want := runs(t, reg, "stubborn", jobs.Cancelled), 1.0; got != want {
		t.Fatalf("runs_total{cancelled}: got %v, want %v", got, want)
	}
}

// Ensure a run that ignores its context past grace and force timeout is
// recorded as cancelled and does not hold Stop forever.
func TestScheduler_Stop_Abandon(t *testing.T) {
	started, release := make(chan struct{}), make(chan struct{})
	deaf := job(t, "deaf", func(context.Context, *sql.DB) (int64, error) {
		close(started)
		<-release // ignores its context
		return 0, nil
	})
	s, h, reg := setup(t, jobs.Config{ShutdownGrace: 100 * time.Millisecond, ForceTimeout: 100 * time.Millisecond}, deaf)
	ran := make(chan struct{})
	go func() {
		s.RunOnce("deaf")
		close(ran)
	}()
	<-started
	if err := s.Stop(context.Background()); !errors.Is(err, jobs.ErrStopTimeout) {
		t.Fatalf("Stop: got %v, want %v", err, jobs.ErrStopTimeout)
	}
	if got := history(t, h, "deaf"); len(got) != 1 || !strings.HasPrefix(got[0], "cancelled:0:abandoned at shutdown") {
		t.Fatalf("history: got %q, want one abandoned run", got)
	}
	close(release)
	<-ran
	// The run's own end must not record it a second time.
	if got := history(t, h, "deaf"); len(got) != 1 {
		t.Fatalf("history after the run returned: got %q, want one row", got)
	}
	if got, want := runs(t, reg, "deaf", jobs.Cancelled)+runs(t, reg, "deaf", jobs.Success), 1.0; got != want {
		t.Fatalf("runs counted: got %v, want %v", got, want)
	}
}

// Ensure cron really runs a job on its schedule, with next-run and lateness
// metrics.
func TestScheduler_Start(t *testing.T) {
	ran := make(chan struct{}, 10)
	j := mustSchedule(t, "* * * * * *") // every second, 6-field spec
	j.Name = "tick"
	j.Func = func(context.Context, *sql.DB) (int64, error) {
		ran <- struct{}{}
		return 0, nil
	}
	s, _, reg := setup(t, jobs.Config{}, j)
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	if next := s.Next("tick"); next.Before(time.Now().Add(-time.Second)) || next.After(time.Now().Add(2*time.Second)) {
		t.Fatalf("Next: got %v, want within the next second", next)
	}
	select {
	case <-ran:
	case <-time.After(5 * time.Second):
		t.Fatal("job did not run within 5 s of an every-second schedule")
	}
	if err := s.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := runs(t, reg, "tick", jobs.Success); got < 1 {
		t.Fatalf("runs_total{success}: got %v, want ≥ 1", got)
	}
	const interval = `
# HELP worker_job_interval_seconds Seconds between the job's next two scheduled runs: how long its schedule expects between successes.
# TYPE worker_job_interval_seconds gauge
worker_job_interval_seconds{job_name="tick"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(interval), "worker_job_interval_seconds"); err != nil {
		t.Fatal(err)
	}
	if got := testutil.CollectAndCount(reg, "worker_job_start_delay_seconds"); got != 1 {
		t.Fatalf("start delay series: got %d, want 1", got)
	}
}

// Ensure the job metrics pass promlint and every job × result exists at
// start-up.
func TestScheduler_Metrics(t *testing.T) {
	_, _, reg := setup(t, jobs.Config{}, job(t, "a", jobs.SQLFunc("SELECT 1")), job(t, "b", jobs.SQLFunc("SELECT 1")))
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	if got, want := testutil.CollectAndCount(reg, "worker_job_runs_total"), 2*len(jobs.Results); got != want {
		t.Fatalf("worker_job_runs_total series: got %d, want %d", got, want)
	}
	for _, name := range []string{"worker_job_running", "worker_job_last_success_timestamp_seconds", "worker_job_next_run_timestamp_seconds", "worker_job_interval_seconds", "worker_job_duration_seconds"} {
		if got, want := testutil.CollectAndCount(reg, name), 2; got != want {
			t.Errorf("%s series: got %d, want %d", name, got, want)
		}
	}
}
