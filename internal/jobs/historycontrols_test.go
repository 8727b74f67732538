package jobs_test

import (
	"context"
	"database/sql"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/sqlworker/worker/internal/jobhistory"
	"github.com/sqlworker/worker/internal/jobs"
)

// Ensure a job with OmitSuccessRows leaves no job_runs row for a success,
// still counts it in worker_job_runs_total, and records its failures.
func TestScheduler_OmitSuccessRows(t *testing.T) {
	fail := errors.New("boom")
	var next error
	j := job(t, "beat", func(context.Context, *sql.DB) (int64, error) { return 0, next })
	j.OmitSuccessRows = true
	kept := job(t, "kept", func(context.Context, *sql.DB) (int64, error) { return 1, nil })
	s, h, reg := setup(t, jobs.Config{}, j, kept)
	for _, err := range []error{nil, nil, fail, nil} {
		next = err
		if _, err := s.RunOnce("beat"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.RunOnce("kept"); err != nil {
		t.Fatal(err)
	}
	if got, want := history(t, h, "beat"), []string{"failure:0:boom"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("job_runs of beat: got %v, want %v (the failure only)", got, want)
	}
	if got, want := history(t, h, "kept"), []string{"success:1:"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("job_runs of kept: got %v, want %v", got, want)
	}
	if got := runs(t, reg, "beat", jobs.Success); got != 3 {
		t.Fatalf("worker_job_runs_total{job_name=beat,result=success}: got %v, want 3", got)
	}
	if got := runs(t, reg, "beat", jobs.Failure); got != 1 {
		t.Fatalf("worker_job_runs_total{job_name=beat,result=failure}: got %v, want 1", got)
	}
}

// Ensure history_prune with a row cap keeps each job's newest rows up to
// the cap, after deleting those older than the retention.
func TestBuiltins_HistoryPrune_MaxRowsPerJob(t *testing.T) {
	b := jobs.NewBuiltins("worker", "v1", time.Hour)
	b.HistoryMaxRowsPerJob = 3
	fn, err := b.Func(jobs.HistoryPrune)
	if err != nil {
		t.Fatal(err)
	}
	s, h, _ := setup(t, jobs.Config{}, job(t, jobs.HistoryPrune, fn))
	ctx := context.Background()
	d, _ := h.Init(ctx)
	now := time.Now()
	var rows []jobhistory.RunRow
	for i := range 5 {
		at := now.Add(time.Duration(i-5) * time.Minute)
		rows = append(rows, jobhistory.RunRow{Job: "x", ScheduledAt: at, StartedAt: at, EndedAt: at, Result: "success"})
	}
	old := now.Add(-2 * time.Hour)
	rows = append(rows, jobhistory.RunRow{Job: "y", ScheduledAt: old, StartedAt: old, EndedAt: old, Result: "success"})
	if err := jobhistory.InsertRuns(ctx, d, rows); err != nil {
		t.Fatal(err)
	}
	r, err := s.RunOnce(jobs.HistoryPrune)
	if err != nil {
		t.Fatal(err)
	}
	if r.Result != jobs.Success || r.RowsAffected != 3 {
		t.Fatalf("history_prune: got %s with %d rows (%v), want success with 3 (1 by age, 2 by the cap)", r.Result, r.RowsAffected, r.Err)
	}
	want := []string{
		jobhistory.FormatTime(now.Add(-3 * time.Minute)), jobhistory.FormatTime(now.Add(-2 * time.Minute)), jobhistory.FormatTime(now.Add(-1 * time.Minute)),
	}
	if got := startedTimes(t, h, "x"); !reflect.DeepEqual(got, want) {
		t.Fatalf("rows of x kept: got %v, want %v (the newest 3)", got, want)
	}
	if got := startedTimes(t, h, "y"); len(got) != 0 {
		t.Fatalf("rows of y kept: got %v, want none (older than the retention)", got)
	}
}

// Ensure a job with RunAtStart runs once at Start, before its schedule's
// first tick, without Start waiting for it.
func TestScheduler_RunAtStart(t *testing.T) {
	release := make(chan struct{})
	done := make(chan *jobs.Run, 1)
	j := job(t, "check", func(context.Context, *sql.DB) (int64, error) {
		<-release
		return 0, nil
	})
	j.RunAtStart = true
	s, _, reg := setup(t, jobs.Config{OnFinish: func(r *jobs.Run, _ error) { done <- r }}, j)
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	close(release) // Start returned while the run was blocked
	r := <-done
	if r.Job != "check" || r.Result != jobs.Success {
		t.Fatalf("run at start: got %s %s (%v), want check success", r.Job, r.Result, r.Err)
	}
	if next := s.Next("check"); !next.After(r.StartedAt) {
		t.Fatalf("Next: got %v, want after the run at start (%v): it ran before the first tick", next, r.StartedAt)
	}
	if got := runs(t, reg, "check", jobs.Success); got != 1 {
		t.Fatalf("worker_job_runs_total{job_name=check,result=success}: got %v, want 1", got)
	}
}
