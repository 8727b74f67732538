// Package jobtest drives a Worker's jobs in tests without waiting for wall
// time, in the style of river's rivertest: RunTick runs the tick a job
// would run at a given scheduled time, Ticks says when those are, and a
// Recorder, given as worker.Options.OnRun, waits for runs' records.
//
// # Why no clock
//
// The worker schedules with robfig/cron, whose loop reads the wall clock
// and takes no clock of a test's. A fake clock would mean a scheduler of
// the worker's own, and a test of it would prove nothing of the one in
// production. Instead the test is the clock: a Worker that is open (Open)
// but not started schedules nothing, and RunTick runs the tick the test
// names through the production chain: claimed for that tick on
// PostgreSQL, skipped while the job's previous run goes, bounded by the
// job's timeout, recorded in job_runs with that scheduled_at and in the
// metrics, handed to Options.OnRun. It waits no jitter. What it does not
// drive is cron's timer itself, and the ticks missed while the worker was
// down (WithCatchUp), which Start reads from job_runs.
//
//	rec := jobtest.NewRecorder()
//	w, _ := worker.New(worker.Options{Config: cfg, OnRun: rec.OnRun})
//	_ = w.Register("rollup", "0 2 * * *", rollup)
//	_ = w.Open(ctx)
//	defer w.Close(ctx)
//	ticks, _ := jobtest.Ticks(w, "rollup", time.Now(), 2)
//	r, err := jobtest.RunTick(ctx, w, "rollup", ticks[0]) // r.ScheduledAt == ticks[0]
//
// The API is v0: it may change until 1.0.
package jobtest

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/sqlworker/worker"
	"github.com/sqlworker/worker/internal/jobs"
	"github.com/sqlworker/worker/internal/testhook"
)

// ErrNotClaimed is in RunTick's error when another replica sharing the
// PostgreSQL database claimed the tick: it runs and records it, not w.
var ErrNotClaimed = jobs.ErrNotClaimed

// RunTick runs the tick of job scheduled at `at`, now, on w, which must be
// open (Open, or Start) and not stopped, and returns its record once it
// finished: that of its last attempt when the job's retries ran (they wait
// their backoff). Its row is in job_runs, or being written by another
// run's write, when it returns. Its errors are RunNow's (worker.ErrUnknownJob,
// worker.ErrJobRunning with the skipped run's record, worker.ErrNotRunning),
// ErrNotClaimed, and ctx's when ctx is done first: ctx bounds the wait, not
// the run.
func RunTick(ctx context.Context, w *worker.Worker, job string, at time.Time) (worker.RunRecord, error) {
	r, err := testhook.RunTick(ctx, w, job, at)
	rec, _ := r.(worker.RunRecord)
	return rec, err
}

// Ticks returns the next n scheduled times of job after from, as the
// worker's scheduler computes them (its daylight-saving policy included);
// give from in the Config's Location. An @every schedule counts from
// from: its ticks are from Start.
func Ticks(w *worker.Worker, job string, from time.Time, n int) ([]time.Time, error) {
	list, err := w.Jobs()
	if err != nil {
		return nil, err
	}
	i := slices.IndexFunc(list, func(j worker.JobInfo) bool { return j.Name == job })
	if i < 0 || !list[i].Enabled {
		return nil, fmt.Errorf("jobtest: %w: %q is not scheduled (no such job, or disabled)", worker.ErrUnknownJob, job)
	}
	out := make([]time.Time, 0, n)
	for t := from; len(out) < n; {
		t = list[i].Next(t)
		if t.IsZero() {
			break // a schedule that never fires again
		}
		out = append(out, t)
	}
	return out, nil
}

// Recorder keeps the records of finished runs that a Worker hands to
// Options.OnRun, for a test to wait on. Give its OnRun method as the
// option. It never blocks the hook. The zero value is ready to use.
type Recorder struct {
	mu      sync.Mutex
	runs    []worker.RunRecord
	seen    map[string]int // by job ("" for any): how many runs Wait returned
	changed chan struct{}  // closed and replaced at each record
}

// NewRecorder returns an empty Recorder.
func NewRecorder() *Recorder { return &Recorder{} }

// OnRun records r; give it as worker.Options.OnRun.
func (rc *Recorder) OnRun(r worker.RunRecord) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.runs = append(rc.runs, r)
	if rc.changed != nil {
		close(rc.changed)
		rc.changed = nil
	}
}

// Runs returns a copy of every record so far, in the order the runs
// finished.
func (rc *Recorder) Runs() []worker.RunRecord {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return slices.Clone(rc.runs)
}

// Wait returns the next record of job ("" for any job) that Wait has not
// returned yet, oldest first, waiting for it until ctx is done. So a test
// can run a job and then Wait for its record, whether the run finished
// before the call or after.
func (rc *Recorder) Wait(ctx context.Context, job string) (worker.RunRecord, error) {
	for {
		rc.mu.Lock()
		n := 0
		for _, r := range rc.runs {
			if job != "" && r.Job != job {
				continue
			}
			if n == rc.seen[job] {
				if rc.seen == nil {
					rc.seen = make(map[string]int)
				}
				rc.seen[job]++
				rc.mu.Unlock()
				return r, nil
			}
			n++
		}
		if rc.changed == nil {
			rc.changed = make(chan struct{})
		}
		changed := rc.changed
		rc.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return worker.RunRecord{}, fmt.Errorf("jobtest: waiting for a run of %q: %w", job, context.Cause(ctx))
		}
	}
}
