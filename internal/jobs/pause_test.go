package jobs_test

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sqlworker/worker/internal/db"
	"github.com/sqlworker/worker/internal/jobhistory"
	"github.com/sqlworker/worker/internal/jobs"
	"github.com/sqlworker/worker/internal/workertest"
)

// pauseWait bounds each wait of the pause tests: a few ticks of an
// every-second job.
const pauseWait = 10 * time.Second

// startTicker starts a Scheduler on h with one job, tick, every second;
// each finished run is sent on the returned channel.
func startTicker(t *testing.T, h *db.Handle, cfg jobs.Config) (*jobs.Scheduler, *prometheus.Registry, <-chan jobs.Run) {
	t.Helper()
	j := mustSchedule(t, "* * * * * *")
	j.Name = "tick"
	j.Func = func(context.Context, *sql.DB) (int64, error) { return 1, nil }
	finished := make(chan jobs.Run, 100)
	reg := prometheus.NewRegistry()
	cfg.DB, cfg.Registerer = h, reg
	cfg.OnFinish = func(r *jobs.Run, _ error) { finished <- *r }
	s, err := jobs.New(cfg, []jobs.Job{j})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Stop(context.Background()) })
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	return s, reg, finished
}

// nextRun returns the next finished run that matches, failing after
// pauseWait.
func nextRun(t *testing.T, finished <-chan jobs.Run, what string, match func(jobs.Run) bool) jobs.Run {
	t.Helper()
	deadline := time.After(pauseWait)
	for {
		select {
		case r := <-finished:
			if match(r) {
				return r
			}
		case <-deadline:
			t.Fatalf("no %s run within %s", what, pauseWait)
		}
	}
}

func pausedRun(r jobs.Run) bool { return r.Result == jobs.Skipped && errors.Is(r.Err, jobs.ErrPaused) }

// Ensure a paused job's ticks are recorded skipped with the reason and
// counted as skipped ticks, not run; that the pause outlives the
// Scheduler (a restart) with its reason and replica; and that a resumed
// job runs again.
func TestScheduler_Pause(t *testing.T) {
	h := workertest.MustOpenHandle(t)
	s, reg, finished := startTicker(t, h, jobs.Config{})
	nextRun(t, finished, "successful", func(r jobs.Run) bool { return r.Result == jobs.Success })
	if _, err := s.Pause(context.Background(), "tick", "maintenance <1>", "r1"); err != nil {
		t.Fatal(err)
	}
	if got := counter(t, reg, "worker_job_paused", "tick"); got != 1 {
		t.Errorf("worker_job_paused: got %v, want 1", got)
	}
	// A run in flight when the pause came may still succeed; then only
	// skipped runs.
	nextRun(t, finished, "paused", pausedRun)
	for i := range 2 {
		r := nextRun(t, finished, "any", func(jobs.Run) bool { return true })
		if !pausedRun(r) || !strings.Contains(r.Err.Error(), "maintenance <1>") {
			t.Fatalf("run %d after the pause: got %s %v, want skipped: job is paused: maintenance <1>", i, r.Result, r.Err)
		}
	}
	if got := counter(t, reg, "worker_job_ticks_skipped_total", "tick"); got < 3 {
		t.Errorf("worker_job_ticks_skipped_total: got %v, want ≥ 3", got)
	}
	// Three ticks without a success: overdue by one interval, but paused
	// on purpose.
	if err := s.Overdue("tick", 1); err != nil {
		t.Errorf("Overdue while paused: got %v, want nil", err)
	}
	if err := s.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := history(t, h, "tick"); !strings.Contains(strings.Join(got, "\n"), "skipped:0:job is paused: maintenance <1>") {
		t.Errorf("job_runs: got %q, want skipped rows saying paused", got)
	}

	// A new Scheduler on the same database: still paused.
	s2, reg2, finished2 := startTicker(t, h, jobs.Config{})
	p, ok := s2.Paused("tick")
	if !ok || p.Reason != "maintenance <1>" || p.By != "r1" || p.At.IsZero() {
		t.Fatalf("Paused after a restart: got %+v %v, want the reason, by r1 and a time", p, ok)
	}
	if got := counter(t, reg2, "worker_job_paused", "tick"); got != 1 {
		t.Errorf("worker_job_paused after a restart: got %v, want 1", got)
	}
	nextRun(t, finished2, "paused", pausedRun)
	if was, err := s2.Resume(context.Background(), "tick"); err != nil || !was {
		t.Fatalf("Resume: got %v, %v, want true, nil", was, err)
	}
	if got := counter(t, reg2, "worker_job_paused", "tick"); got != 0 {
		t.Errorf("worker_job_paused after Resume: got %v, want 0", got)
	}
	nextRun(t, finished2, "successful", func(r jobs.Run) bool { return r.Result == jobs.Success })
	if _, ok := s2.Paused("tick"); ok {
		t.Error("Paused after Resume: got true, want false")
	}
}

// Ensure Pause and Resume refuse a job that is not scheduled, and Pause a
// reason too long.
func TestScheduler_Pause_Refused(t *testing.T) {
	s, _, _ := setup(t, jobs.Config{}, job(t, "hourly", rows(0)))
	if _, err := s.Pause(context.Background(), "nope", "", ""); !errors.Is(err, jobs.ErrUnknownJob) {
		t.Errorf("Pause(nope): got %v, want ErrUnknownJob", err)
	}
	if _, err := s.Resume(context.Background(), "nope"); !errors.Is(err, jobs.ErrUnknownJob) {
		t.Errorf("Resume(nope): got %v, want ErrUnknownJob", err)
	}
	if _, err := s.Pause(context.Background(), "hourly", strings.Repeat("x", jobs.MaxPauseReason+1), ""); err == nil {
		t.Error("Pause with a reason too long: got nil, want an error")
	}
	if _, ok := s.Paused("hourly"); ok {
		t.Error("Paused after refused pauses: got true, want false")
	}
}

// Ensure a Scheduler with a PauseRefresh sees a pause and a resume that
// another writer made in job_pauses, as a replica sees another's.
func TestScheduler_Pause_Refresh(t *testing.T) {
	h := workertest.MustOpenHandle(t)
	s, reg, finished := startTicker(t, h, jobs.Config{PauseRefresh: 50 * time.Millisecond})
	d, err := h.Init(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := jobhistory.SetPause(context.Background(), d, jobhistory.PauseRow{Job: "tick", Reason: "elsewhere", PausedAt: time.Now(), PausedBy: "r2"}); err != nil {
		t.Fatal(err)
	}
	nextRun(t, finished, "paused", pausedRun)
	if p, ok := s.Paused("tick"); !ok || p.By != "r2" {
		t.Errorf("Paused: got %+v %v, want paused by r2", p, ok)
	}
	if got := counter(t, reg, "worker_job_paused", "tick"); got != 1 {
		t.Errorf("worker_job_paused: got %v, want 1", got)
	}
	if was, err := jobhistory.DeletePause(context.Background(), d, "tick"); err != nil || !was {
		t.Fatalf("DeletePause: got %v, %v, want true, nil", was, err)
	}
	nextRun(t, finished, "successful", func(r jobs.Run) bool { return r.Result == jobs.Success })
}
