package jobs_test

import (
	"context"
	"database/sql"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sqlworker/worker/internal/jobs"
	"github.com/sqlworker/worker/internal/schedule"
)

// rows returns a Func that reports n rows affected.
func rows(n int64) jobs.Func {
	return func(context.Context, *sql.DB) (int64, error) { return n, nil }
}

// seriesOf reports whether any worker_job_* series has job_name name.
func seriesOf(t *testing.T, reg prometheus.Gatherer, name string) bool {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "job_name" && l.GetValue() == name {
					return true
				}
			}
		}
	}
	return false
}

// Ensure Replace adds, changes and removes jobs, keeps an unchanged job's
// entry and next run, and deletes a removed job's series.
func TestScheduler_Replace(t *testing.T) {
	a, b := job(t, "a", rows(1)), job(t, "b", rows(2))
	a.Source, b.Source = "a1", "b"
	s, h, reg := setup(t, jobs.Config{}, a, b)
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	nextB := s.Next("b")

	a2, c := job(t, "a", rows(10)), job(t, "c", rows(3))
	a2.Source, c.Source = "a2", "c"
	b2 := job(t, "b", rows(99)) // same settings and Source as b: kept, Func and all
	b2.Source = "b"
	ch, err := s.Replace([]jobs.Job{a2, b2, c})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := ch, (jobs.Changes{Added: []string{"c"}, Changed: []string{"a"}}); !slices.Equal(got.Added, want.Added) ||
		!slices.Equal(got.Changed, want.Changed) || len(got.Removed) != 0 {
		t.Fatalf("changes: got %+v, want %+v", got, want)
	}
	if got, want := s.Next("b"), nextB; !got.Equal(want) {
		t.Fatalf("next run of unchanged b: got %v, want %v", got, want)
	}
	if s.Next("c").IsZero() {
		t.Fatal("next run of added c: got zero, want its schedule's")
	}
	for name, want := range map[string]int64{"a": 10, "b": 2, "c": 3} {
		r, err := s.RunOnce(name)
		if err != nil {
			t.Fatal(err)
		}
		if got := r.RowsAffected; got != want {
			t.Fatalf("run of %s: got %d rows, want %d", name, got, want)
		}
	}

	ch, err = s.Replace([]jobs.Job{a2, c})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := ch.Removed, []string{"b"}; !slices.Equal(got, want) || len(ch.Added)+len(ch.Changed) != 0 {
		t.Fatalf("changes: got %+v, want removed %v only", ch, want)
	}
	if _, err := s.RunOnce("b"); !errors.Is(err, jobs.ErrUnknownJob) {
		t.Fatalf("run of removed b: got %v, want %v", err, jobs.ErrUnknownJob)
	}
	if seriesOf(t, reg, "b") {
		t.Fatal("series of removed b: still exported")
	}
	if got, want := strings.Join(s.JobNames(), ","), "a,c"; got != want {
		t.Fatalf("job names: got %q, want %q", got, want)
	}
	if got, want := len(history(t, h, "b")), 1; got != want {
		t.Fatalf("job_runs rows of b: got %d, want %d", got, want)
	}
}

// Ensure a run going across Replace finishes under its old settings and is
// recorded once, and that the changed job's new settings never run beside
// it: a run asked for meanwhile is skipped.
func TestScheduler_Replace_InFlight(t *testing.T) {
	started, release := make(chan struct{}), make(chan struct{})
	old := job(t, "a", func(ctx context.Context, _ *sql.DB) (int64, error) {
		close(started)
		<-release
		return 1, nil
	})
	old.Source = "old"
	s, h, reg := setup(t, jobs.Config{}, old)
	done := make(chan *jobs.Run)
	go func() {
		r, _ := s.RunOnce("a")
		done <- r
	}()
	<-started

	changed := job(t, "a", rows(2))
	changed.Source, changed.Timeout = "new", 0
	if _, err := s.Replace([]jobs.Job{changed}); err != nil {
		t.Fatal(err)
	}
	r, err := s.RunOnce("a")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := r.Result, jobs.Skipped; got != want {
		t.Fatalf("run of the new a while the old one goes: got %s, want %s", got, want)
	}
	close(release)
	if r := <-done; r.Result != jobs.Success || r.RowsAffected != 1 {
		t.Fatalf("old run: got %s with %d rows, want success with 1 (its old func)", r.Result, r.RowsAffected)
	}
	r, err = s.RunOnce("a")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := r.RowsAffected, int64(2); got != want {
		t.Fatalf("run of the new a: got %d rows, want %d", got, want)
	}
	if got, want := strings.Join(history(t, h, "a"), ","), "skipped:0:previous run still running,success:1:,success:2:"; got != want {
		t.Fatalf("history: got %q, want %q", got, want)
	}
	if got, want := runs(t, reg, "a", jobs.Success), 2.0; got != want {
		t.Fatalf("runs_total{success}: got %v, want %v", got, want)
	}
}

// Ensure a job removed while it runs is recorded once when its run ends,
// and its series go then, not before.
func TestScheduler_Replace_RemovedWhileRunning(t *testing.T) {
	started, release := make(chan struct{}), make(chan struct{})
	b := job(t, "b", func(ctx context.Context, _ *sql.DB) (int64, error) {
		close(started)
		<-release
		return 0, nil
	})
	s, h, reg := setup(t, jobs.Config{}, job(t, "a", rows(0)), b)
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.RunOnce("b")
	}()
	<-started
	if _, err := s.Replace([]jobs.Job{job(t, "a", rows(0))}); err != nil {
		t.Fatal(err)
	}
	if !seriesOf(t, reg, "b") {
		t.Fatal("series of b while its run goes: gone, want kept until it ends")
	}
	close(release)
	<-done
	if seriesOf(t, reg, "b") {
		t.Fatal("series of b after its run ended: still exported")
	}
	if got, want := strings.Join(history(t, h, "b"), ","), "success:0:"; got != want {
		t.Fatalf("history of b: got %q, want %q", got, want)
	}
}

// Ensure a job added by Replace runs on its schedule.
func TestScheduler_Replace_AddedRuns(t *testing.T) {
	s, _, _ := setup(t, jobs.Config{}, job(t, "a", rows(0)))
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	ran := make(chan struct{}, 1)
	c := mustSchedule(t, "@every 1s")
	c.Name, c.Func = "c", func(context.Context, *sql.DB) (int64, error) {
		select {
		case ran <- struct{}{}:
		default:
		}
		return 0, nil
	}
	if _, err := s.Replace([]jobs.Job{job(t, "a", rows(0)), c}); err != nil {
		t.Fatal(err)
	}
	<-ran
}

// Ensure Replace refuses a bad list without changing anything, and runs
// nothing after Stop.
func TestScheduler_Replace_Refused(t *testing.T) {
	s, _, _ := setup(t, jobs.Config{}, job(t, "a", rows(0)))
	if _, err := s.Replace([]jobs.Job{job(t, "b", rows(0)), job(t, "b", rows(0))}); err == nil || !strings.Contains(err.Error(), `duplicate job name "b"`) {
		t.Fatalf("duplicate: got %v, want a duplicate job name error", err)
	}
	if _, err := s.Replace([]jobs.Job{{Name: "x"}}); err == nil {
		t.Fatal("job without schedule: got nil error")
	}
	bad := job(t, "b", rows(0))
	bad.Jitter = time.Nanosecond
	if _, err := s.Replace([]jobs.Job{bad}); err == nil || !strings.Contains(err.Error(), `job "b": jitter`) {
		t.Fatalf("jitter out of bounds: got %v, want an error naming the job's jitter", err)
	}
	if got, want := strings.Join(s.JobNames(), ","), "a"; got != want {
		t.Fatalf("jobs after refused Replace: got %q, want %q", got, want)
	}
	if err := s.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Replace([]jobs.Job{job(t, "b", rows(0))}); !errors.Is(err, jobs.ErrStopped) {
		t.Fatalf("after Stop: got %v, want %v", err, jobs.ErrStopped)
	}
}

// Ensure every setting of a Job but Func counts in whether Replace sees it
// changed: Source stands for the Func, and settings added to Job later
// (here retries and jitter) count without Replace naming them.
func TestScheduler_Replace_Compared(t *testing.T) {
	base := job(t, "a", rows(0))
	base.Source = "SELECT 1"
	s, _, _ := setup(t, jobs.Config{}, base)
	for _, tc := range []struct {
		name    string
		change  func(j *jobs.Job)
		changed bool
	}{
		{"same, another func", func(j *jobs.Job) { j.Func = rows(1) }, false},
		{"source", func(j *jobs.Job) { j.Source = "SELECT 2" }, true},
		{"timeout", func(j *jobs.Job) { j.Timeout++ }, true},
		{"retries", func(j *jobs.Job) { j.Retries = 2 }, true},
		{"jitter", func(j *jobs.Job) { j.Jitter = time.Second }, true},
		{"omit success rows", func(j *jobs.Job) { j.OmitSuccessRows = true }, true},
		{"dst", func(j *jobs.Job) { j.DST = schedule.DSTWallClock }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j := base
			tc.change(&j)
			ch, err := s.Replace([]jobs.Job{j})
			if err != nil {
				t.Fatal(err)
			}
			if got := len(ch.Changed) == 1; got != tc.changed {
				t.Fatalf("changed: got %v (%+v), want %v", got, ch, tc.changed)
			}
			if _, err := s.Replace([]jobs.Job{base}); err != nil { // back, for the next case
				t.Fatal(err)
			}
		})
	}
}

// Ensure a job that Replace removed, its series deleted, and a later Replace
// added back is counted again: its new entry has series of its own, not
// the deleted ones of the entry before.
func TestScheduler_Replace_RemovedAndBack(t *testing.T) {
	s, _, reg := setup(t, jobs.Config{}, job(t, "a", rows(0)), job(t, "b", rows(0)))
	if _, err := s.RunOnce("b"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Replace([]jobs.Job{job(t, "a", rows(0))}); err != nil {
		t.Fatal(err)
	}
	if seriesOf(t, reg, "b") {
		t.Fatal("series of b after Replace removed it: still exported")
	}
	if _, err := s.Replace([]jobs.Job{job(t, "a", rows(0)), job(t, "b", rows(0))}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RunOnce("b"); err != nil {
		t.Fatal(err)
	}
	if got, want := runs(t, reg, "b", jobs.Success), 1.0; got != want {
		t.Fatalf("runs_total{b, success} after b came back: got %v, want %v (counted from 0 again)", got, want)
	}
}
