package jobs_test

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sqlworker/worker/internal/db"
	"github.com/sqlworker/worker/internal/jobhistory"
	"github.com/sqlworker/worker/internal/jobs"
)

// counter returns the value of a worker_job_* counter (or gauge) of one job.
func counter(t *testing.T, reg prometheus.Gatherer, name, job string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "job_name" && l.GetValue() == job && m.Gauge != nil {
					return m.GetGauge().GetValue()
				}
				if l.GetName() == "job_name" && l.GetValue() == job {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("%s{job_name=%q} not found", name, job)
	return 0
}

// seedRun writes a finished run of job scheduled at at, as a previous
// worker process would have.
func seedRun(t *testing.T, h *db.Handle, job string, at time.Time) {
	t.Helper()
	d, err := h.Init(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	row := jobhistory.RunRow{Job: job, ScheduledAt: at, StartedAt: at, EndedAt: at, Result: string(jobs.Success)}
	if err := jobhistory.InsertRuns(context.Background(), d, []jobhistory.RunRow{row}); err != nil {
		t.Fatal(err)
	}
}

// Ensure that at Start the ticks a job missed since its last job_runs row
// are run or skipped by its catch_up policy: skip runs none, once the
// newest, all the newest CatchUpLimit, oldest first, each with the missed
// tick's scheduled_at; the others are counted in ticks_skipped_total.
func TestScheduler_CatchUp(t *testing.T) {
	const missed = 5
	for _, tt := range []struct {
		policy  jobs.CatchUp
		limit   int
		run     int // of the newest missed ticks
		skipped int
	}{
		{jobs.CatchUpSkip, 0, 0, missed},
		{"", 0, 0, missed},
		{jobs.CatchUpOnce, 0, 1, missed - 1},
		{jobs.CatchUpAll, 3, 3, missed - 3},
		{jobs.CatchUpAll, 0, missed, 0}, // DefaultCatchUpLimit is more
	} {
		t.Run(string(tt.policy)+"_"+string(rune('0'+tt.limit)), func(t *testing.T) {
			done := make(chan *jobs.Run, missed+1)
			j := mustSchedule(t, "@every 1m")
			j.Name, j.CatchUp, j.CatchUpLimit = "rollup", tt.policy, tt.limit
			j.Func = func(context.Context, *sql.DB) (int64, error) { return 1, nil }
			s, h, reg := setup(t, jobs.Config{OnFinish: func(r *jobs.Run, _ error) { done <- r }}, j)
			last := time.Now().Add(-missed*time.Minute - 30*time.Second).Truncate(time.Millisecond)
			seedRun(t, h, "rollup", last)
			var ticks []time.Time
			for at := j.Schedule.Next(last); len(ticks) < missed; at = j.Schedule.Next(at) {
				ticks = append(ticks, at)
			}
			if err := s.Start(); err != nil {
				t.Fatal(err)
			}
			want := ticks[missed-tt.run:]
			for i, at := range want {
				r := <-done
				if !r.ScheduledAt.Equal(at) || !r.CatchUp || r.Result != jobs.Success {
					t.Fatalf("caught-up run %d: got scheduled %v catch-up %v %s, want %v true success", i, r.ScheduledAt, r.CatchUp, r.Result, at)
				}
			}
			if err := s.Stop(context.Background()); err != nil {
				t.Fatal(err)
			}
			if got := counter(t, reg, "worker_job_ticks_skipped_total", "rollup"); got != float64(tt.skipped) {
				t.Errorf("ticks_skipped_total: got %v, want %d", got, tt.skipped)
			}
			if got := counter(t, reg, "worker_job_ticks_caught_up_total", "rollup"); got != float64(tt.run) {
				t.Errorf("ticks_caught_up_total: got %v, want %d", got, tt.run)
			}
			wantRows := []string{jobhistory.FormatTime(last)}
			for _, at := range want {
				wantRows = append(wantRows, jobhistory.FormatTime(at))
			}
			if got := column(t, h, "scheduled_at", "rollup"); strings.Join(got, ",") != strings.Join(wantRows, ",") {
				t.Errorf("job_runs scheduled_at: got %v, want %v", got, wantRows)
			}
			if got := testutil.CollectAndCount(reg, "worker_job_start_delay_seconds"); got != 1 {
				t.Errorf("start_delay_seconds series: got %d, want 1", got)
			}
		})
	}
}

// Ensure a catch-up sequence holds the job's running slot from its first
// tick to its last (issue 18: a regular tick ran between two caught-up
// ticks, the next caught-up tick was recorded skipped, and
// ticks_caught_up_total still counted it). A run asked for between two
// caught-up runs, in the OnFinish of the first, is skipped; every caught-up
// tick runs, oldest first, and the counter counts exactly those runs.
func TestScheduler_CatchUp_HoldsSlot(t *testing.T) {
	const missed = 4
	j := mustSchedule(t, "@every 1m")
	j.Name, j.CatchUp = "rollup", jobs.CatchUpAll
	j.Func = func(context.Context, *sql.DB) (int64, error) { return 1, nil }
	var s *jobs.Scheduler
	var asked atomic.Bool
	between := make(chan *jobs.Run, 1)
	done := make(chan *jobs.Run, 2*missed)
	s, h, reg := setup(t, jobs.Config{OnFinish: func(r *jobs.Run, _ error) {
		done <- r
		if r.CatchUp && asked.CompareAndSwap(false, true) {
			// In the gap between two caught-up runs: no other run may start.
			r2, err := s.RunOnce("rollup")
			if err != nil {
				t.Errorf("RunOnce between caught-up runs: %v", err)
				r2 = &jobs.Run{}
			}
			between <- r2
		}
	}}, j)
	last := time.Now().Add(-missed*time.Minute - 30*time.Second).Truncate(time.Millisecond)
	seedRun(t, h, "rollup", last)
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	var caught []time.Time
	for len(caught) < missed {
		r := <-done
		if !r.CatchUp {
			continue // the run asked for in between
		}
		if r.Result != jobs.Success {
			t.Fatalf("caught-up run %v: got %s (%v), want success", r.ScheduledAt, r.Result, r.Err)
		}
		caught = append(caught, r.ScheduledAt)
	}
	if r := <-between; r.Result != jobs.Skipped {
		t.Errorf("run between caught-up runs: got %q, want skipped", r.Result)
	}
	if err := s.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	for i := 1; i < len(caught); i++ {
		if !caught[i].After(caught[i-1]) {
			t.Errorf("caught-up ticks out of order: %v", caught)
		}
	}
	if got := counter(t, reg, "worker_job_ticks_caught_up_total", "rollup"); got != missed {
		t.Errorf("ticks_caught_up_total: got %v, want %d", got, missed)
	}
	if got := runs(t, reg, "rollup", jobs.Success); got != missed {
		t.Errorf("runs_total{success}: got %v, want %d", got, missed)
	}
}

// Ensure a job with no row in job_runs has missed nothing.
func TestScheduler_CatchUp_FirstStart(t *testing.T) {
	j := job(t, "fresh", func(context.Context, *sql.DB) (int64, error) { return 0, nil })
	j.CatchUp = jobs.CatchUpAll
	s, _, reg := setup(t, jobs.Config{}, j)
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	if err := s.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"worker_job_ticks_skipped_total", "worker_job_ticks_caught_up_total"} {
		if got := counter(t, reg, name, "fresh"); got != 0 {
			t.Errorf("%s: got %v, want 0", name, got)
		}
	}
}

// Ensure a run that fails with SQLITE_BUSY is retried, each attempt has
// its job_runs row with its attempt number, and only the final attempt is
// in runs_total while the retry is in retries_total.
func TestScheduler_Retry_Busy(t *testing.T) {
	h, lock := lockedDB(t)
	reg := prometheus.NewRegistry()
	release := lock()
	var released atomic.Bool
	j := job(t, "rollup", jobs.SQLFunc("CREATE TABLE IF NOT EXISTS events (x); INSERT INTO events VALUES (1);"))
	j.Retries, j.RetryBackoff = 3, 10*time.Millisecond
	s, err := jobs.New(jobs.Config{DB: h, Registerer: reg, OnFinish: func(r *jobs.Run, _ error) {
		if r.Attempt == 1 && released.CompareAndSwap(false, true) {
			release() // the other connection lets go after the first attempt
		}
	}}, []jobs.Job{j})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Stop(context.Background()) })
	r, err := s.RunOnce("rollup")
	if err != nil {
		t.Fatal(err)
	}
	if r.Attempt != 2 || r.Result != jobs.Success {
		t.Fatalf("last attempt: got %d %s (%v), want 2 success", r.Attempt, r.Result, r.Err)
	}
	if err := s.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := strings.Join(column(t, h, "attempt || ':' || result || ':' || error", "rollup"), ",")
	if want := "1:failure:database is locked,2:success:"; got != want {
		t.Errorf("job_runs: got %q, want %q", got, want)
	}
	for _, c := range []struct {
		name string
		got  float64
		want float64
	}{
		{"runs_total{success}", runs(t, reg, "rollup", jobs.Success), 1},
		{"runs_total{failure}", runs(t, reg, "rollup", jobs.Failure), 0},
		{"retries_total", counter(t, reg, "worker_job_retries_total", "rollup"), 1},
		{"retries_given_up_total", counter(t, reg, "worker_job_retries_given_up_total", "rollup"), 0},
	} {
		if c.got != c.want {
			t.Errorf("%s: got %v, want %v", c.name, c.got, c.want)
		}
	}
}

// Ensure failures that would fail the same way again are not retried: a
// constraint violation, a syntax error, a panic.
func TestScheduler_Retry_NotRetryable(t *testing.T) {
	for _, tt := range []struct {
		name   string
		fn     jobs.Func
		result jobs.Result
	}{
		{"constraint", jobs.SQLFunc("CREATE TABLE IF NOT EXISTS u (x UNIQUE); INSERT INTO u VALUES (1); INSERT INTO u VALUES (1);"), jobs.Failure},
		{"syntax", jobs.SQLFunc("INSERT INTO"), jobs.Failure},
		{"panic", func(context.Context, *sql.DB) (int64, error) { panic("bug") }, jobs.Panic},
		{"plain", func(context.Context, *sql.DB) (int64, error) { return 0, errors.New("no such thing") }, jobs.Failure},
	} {
		t.Run(tt.name, func(t *testing.T) {
			j := job(t, "job", tt.fn)
			j.Retries, j.RetryBackoff = 3, time.Millisecond
			s, h, reg := setup(t, jobs.Config{}, j)
			r, err := s.RunOnce("job")
			if err != nil {
				t.Fatal(err)
			}
			if r.Attempt > 1 || r.Result != tt.result {
				t.Fatalf("run: got attempt %d %s (%v), want attempt 1 %s", r.Attempt, r.Result, r.Err, tt.result)
			}
			if got := column(t, h, "attempt || ':' || result", "job"); strings.Join(got, ",") != "1:"+string(tt.result) {
				t.Errorf("job_runs: got %v, want [1:%s]", got, tt.result)
			}
			if got := counter(t, reg, "worker_job_retries_total", "job"); got != 0 {
				t.Errorf("retries_total: got %v, want 0", got)
			}
		})
	}
}

// Ensure a timeout is retried, and a Go job's error marked retryable too,
// with the wait doubling from one attempt to the next.
func TestScheduler_Retry_TimeoutAndMarked(t *testing.T) {
	var calls atomic.Int32
	j := job(t, "flaky", func(ctx context.Context, _ *sql.DB) (int64, error) {
		switch calls.Add(1) {
		case 1:
			<-ctx.Done() // the job's timeout
			return 0, ctx.Err()
		case 2:
			return 0, jobs.MarkRetryable(errors.New("service down"))
		}
		return 1, nil
	})
	j.Timeout, j.Retries, j.RetryBackoff = 20*time.Millisecond, 2, 5*time.Millisecond
	s, h, reg := setup(t, jobs.Config{}, j)
	r, err := s.RunOnce("flaky")
	if err != nil {
		t.Fatal(err)
	}
	if r.Attempt != 3 || r.Result != jobs.Success {
		t.Fatalf("last attempt: got %d %s (%v), want 3 success", r.Attempt, r.Result, r.Err)
	}
	if err := s.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(column(t, h, "attempt || ':' || result", "flaky"), ","), "1:timeout,2:failure,3:success"; got != want {
		t.Errorf("job_runs: got %q, want %q", got, want)
	}
	if got := counter(t, reg, "worker_job_retries_total", "flaky"); got != 2 {
		t.Errorf("retries_total: got %v, want 2", got)
	}
	if got := runs(t, reg, "flaky", jobs.Timeout) + runs(t, reg, "flaky", jobs.Failure); got != 0 {
		t.Errorf("runs_total{timeout,failure}: got %v, want 0: the retried attempts are in retries_total", got)
	}
}

// Ensure a retry whose wait would end after the job's next tick is not
// started: the failure is final and counted as given up.
func TestScheduler_Retry_GivenUpBeforeNextTick(t *testing.T) {
	j := mustSchedule(t, "@every 1h")
	j.Name, j.Retries, j.RetryBackoff = "hourly", 1, jobs.MaxRetryBackoff
	j.Func = func(context.Context, *sql.DB) (int64, error) { return 0, jobs.MarkRetryable(errors.New("down")) }
	s, h, reg := setup(t, jobs.Config{}, j)
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	r, err := s.RunOnce("hourly")
	if err != nil {
		t.Fatal(err)
	}
	if r.Attempt > 1 || r.Result != jobs.Failure {
		t.Fatalf("run: got attempt %d %s, want attempt 1 failure", r.Attempt, r.Result)
	}
	if err := s.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := counter(t, reg, "worker_job_retries_given_up_total", "hourly"); got != 1 {
		t.Errorf("retries_given_up_total: got %v, want 1", got)
	}
	if got := runs(t, reg, "hourly", jobs.Failure); got != 1 {
		t.Errorf("runs_total{failure}: got %v, want 1", got)
	}
	if got := column(t, h, "attempt || ':' || result", "hourly"); strings.Join(got, ",") != "1:failure" {
		t.Errorf("job_runs: got %v, want [1:failure]", got)
	}
}

// Ensure Stop during a retry's wait ends the wait at once: the attempt
// before it is final, counted once in runs_total and as given up.
func TestScheduler_Retry_StopDuringBackoff(t *testing.T) {
	finished := make(chan struct{})
	j := job(t, "waits", func(context.Context, *sql.DB) (int64, error) { return 0, jobs.MarkRetryable(errors.New("down")) })
	j.Retries, j.RetryBackoff = 1, jobs.MaxRetryBackoff
	s, _, reg := setup(t, jobs.Config{ShutdownGrace: time.Hour, OnFinish: func(*jobs.Run, error) { close(finished) }}, j)
	ran := make(chan *jobs.Run, 1)
	go func() {
		r, _ := s.RunOnce("waits") // not started: no next tick bounds the wait
		ran <- r
	}()
	<-finished // the first attempt is recorded; its retry waits an hour
	if err := s.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if r := <-ran; r.Attempt > 1 || r.Result != jobs.Failure {
		t.Fatalf("run: got attempt %d %s, want attempt 1 failure", r.Attempt, r.Result)
	}
	if got := runs(t, reg, "waits", jobs.Failure); got != 1 {
		t.Errorf("runs_total{failure}: got %v, want 1", got)
	}
	if got := counter(t, reg, "worker_job_retries_given_up_total", "waits"); got != 1 {
		t.Errorf("retries_given_up_total: got %v, want 1", got)
	}
}

// Ensure each scheduled run of a job with jitter starts after its tick plus
// a delay in [0, jitter), recorded in job_runs.jitter_ms and
// worker_job_jitter_seconds, and that its start delay is counted after the
// jitter.
func TestScheduler_Jitter(t *testing.T) {
	const n, jitter = 3, 400 * time.Millisecond
	done := make(chan *jobs.Run, n+2)
	j := mustSchedule(t, "* * * * * *")
	j.Name, j.Jitter = "spread", jitter
	j.Func = func(context.Context, *sql.DB) (int64, error) { return 0, nil }
	s, h, reg := setup(t, jobs.Config{OnFinish: func(r *jobs.Run, _ error) { done <- r }}, j)
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	var rs []*jobs.Run
	for range n {
		rs = append(rs, <-done)
	}
	if err := s.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if r.Jitter < 0 || r.Jitter >= jitter {
			t.Errorf("jitter: got %s, want in [0, %s)", r.Jitter, jitter)
		}
		if r.StartedAt.Before(r.ScheduledAt.Add(r.Jitter)) {
			t.Errorf("started %v, want at or after scheduled %v + jitter %s", r.StartedAt, r.ScheduledAt, r.Jitter)
		}
	}
	got := column(t, h, "jitter_ms", "spread")
	if len(got) < n {
		t.Fatalf("job_runs rows: got %d, want ≥ %d", len(got), n)
	}
	for i, r := range rs {
		if want := strings.TrimSuffix(r.Jitter.String(), "ms"); r.Jitter >= time.Millisecond && got[i] != want {
			t.Errorf("job_runs.jitter_ms of run %d: got %s, want %s", i, got[i], want)
		}
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "worker_job_jitter_seconds" {
			if c := mf.GetMetric()[0].GetHistogram().GetSampleCount(); c < n {
				t.Errorf("jitter_seconds count: got %d, want ≥ %d", c, n)
			}
			return
		}
	}
	t.Error("worker_job_jitter_seconds not found")
}

// Ensure the new metrics pass the linter.
func TestScheduler_ReliabilityMetrics_Lint(t *testing.T) {
	j := job(t, "lint", func(context.Context, *sql.DB) (int64, error) { return 0, nil })
	j.Jitter = time.Second
	_, _, reg := setup(t, jobs.Config{}, j)
	problems, err := testutil.GatherAndLint(reg, "worker_job_ticks_skipped_total", "worker_job_ticks_caught_up_total",
		"worker_job_retries_total", "worker_job_retries_given_up_total", "worker_job_jitter_seconds")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
}

// Ensure New refuses out-of-bounds settings, naming them.
func TestNew_ReliabilityBounds(t *testing.T) {
	for _, tt := range []struct {
		name string
		set  func(*jobs.Job)
		want string
	}{
		{"CatchUp", func(j *jobs.Job) { j.CatchUp = "twice" }, `jobs: job "j": catch-up: must be skip, once or all, got "twice"`},
		{"Limit", func(j *jobs.Job) { j.CatchUp, j.CatchUpLimit = jobs.CatchUpAll, -1 }, `jobs: job "j": catch-up limit: must be between 1 and 1000, got -1`},
		{"Retries", func(j *jobs.Job) { j.Retries = 11 }, `jobs: job "j": retries: must be between 0 and 10, got 11`},
		{"Backoff", func(j *jobs.Job) { j.RetryBackoff = 2 * time.Hour }, `jobs: job "j": retry backoff: must be at most 1h0m0s, got 2h0m0s`},
		{"Jitter", func(j *jobs.Job) { j.Jitter = time.Hour }, `jobs: job "j": jitter: must be less than the schedule's interval (1h0m0s), got 1h0m0s`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			j := job(t, "j", func(context.Context, *sql.DB) (int64, error) { return 0, nil })
			tt.set(&j)
			_, err := jobs.New(jobs.Config{DB: nopIniter{}}, []jobs.Job{j})
			if err == nil || err.Error() != tt.want {
				t.Fatalf("got %v, want %s", err, tt.want)
			}
		})
	}
}

type nopIniter struct{}

func (nopIniter) Init(context.Context) (*sql.DB, error) { return nil, errors.New("no database") }

// Ensure the duplicate check counts the ticks with more than one success
// row, per job (issue 23: two success rows for one (job, scheduled_at)
// would go unnoticed): a planted second success row of one tick makes
// worker_job_duplicate_ticks 1 for its job; a failure beside a success, or
// another tick, does not count.
func TestScheduler_DuplicateTicks(t *testing.T) {
	a := job(t, "a", rows(0))
	b := job(t, "b", rows(0))
	s, h, reg := setup(t, jobs.Config{DuplicateCheck: -1}, a, b)
	at := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	d, err := h.Init(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	row := func(job string, at time.Time, result jobs.Result) jobhistory.RunRow {
		return jobhistory.RunRow{Job: job, ScheduledAt: at, StartedAt: at, EndedAt: at, Result: string(result)}
	}
	if err := jobhistory.InsertRuns(context.Background(), d, []jobhistory.RunRow{
		row("a", at, jobs.Success), row("a", at, jobs.Success), // ran twice
		row("a", at.Add(time.Minute), jobs.Success),
		row("b", at, jobs.Failure), row("b", at, jobs.Success), // a retry
	}); err != nil {
		t.Fatal(err)
	}
	s.CountDuplicates()
	for job, want := range map[string]float64{"a": 1, "b": 0} {
		if got := counter(t, reg, "worker_job_duplicate_ticks", job); got != want {
			t.Errorf("worker_job_duplicate_ticks{job_name=%q}: got %v, want %v", job, got, want)
		}
	}
}
