package worker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sqlworker/worker/internal/jobhistory"
	"github.com/sqlworker/worker/internal/jobs"
	webpkg "github.com/sqlworker/worker/internal/web"
)

// MaxPauseReason bounds the reason of a pause, in bytes.
const MaxPauseReason = jobs.MaxPauseReason

// JobPause is a paused job's pause, as job_pauses records it.
type JobPause struct {
	Reason   string
	PausedAt time.Time
	// PausedBy is the replica id of the worker that paused the job on
	// PostgreSQL; "" on SQLite.
	PausedBy string
}

// Pause pauses a scheduled job until Resume: its ticks are not run but
// recorded skipped in job_runs, with an error that says paused and the
// reason, and counted in worker_job_ticks_skipped_total; worker_job_paused
// is 1. The pause is a row of the job_pauses table, so it outlives a
// restart, and on PostgreSQL every replica honours it within
// jobs' DefaultPauseRefresh (1 s). A run in progress is left to finish.
// Pausing a paused job replaces its reason. It returns ErrUnknownJob,
// ErrNotRunning, or an error for a reason longer than MaxPauseReason.
func (w *Worker) Pause(ctx context.Context, name, reason string) error {
	sched, err := w.scheduler(phaseStarted)
	if err != nil {
		return err
	}
	_, err = sched.Pause(ctx, name, reason, w.handle.ReplicaID())
	return unknownJob(name, err)
}

// Resume resumes a paused job: its next tick runs. Resuming a job that is
// not paused does nothing. It returns ErrUnknownJob or ErrNotRunning.
func (w *Worker) Resume(ctx context.Context, name string) error {
	sched, err := w.scheduler(phaseStarted)
	if err != nil {
		return err
	}
	_, err = sched.Resume(ctx, name)
	return unknownJob(name, err)
}

// unknownJob returns the scheduler's error for a job that is not
// scheduled as ErrUnknownJob, and any other error as it is.
func unknownJob(name string, err error) error {
	if errors.Is(err, jobs.ErrUnknownJob) {
		return fmt.Errorf("%w: %s is not scheduled (no such job, or disabled)", ErrUnknownJob, webpkg.Quote(name))
	}
	return err
}

// Paused returns the job's pause and whether it is paused, as this worker
// last read it; false before Start.
func (w *Worker) Paused(name string) (JobPause, bool) {
	w.mu.Lock()
	sched := w.sched
	w.mu.Unlock()
	if sched == nil {
		return JobPause{}, false
	}
	p, ok := sched.Paused(name)
	return JobPause{Reason: p.Reason, PausedAt: p.At, PausedBy: p.By}, ok
}

// adminTimeout bounds an admin request's database work.
const adminTimeout = 10 * time.Second

// Pause is the admin API's pause; see webpkg.Pauser.
func (a admin) Pause(name, reason string) (webpkg.JobState, error) {
	if len(reason) > MaxPauseReason {
		return webpkg.JobState{}, fmt.Errorf("%w: reason: %d bytes, more than %d", webpkg.ErrBadRequest, len(reason), MaxPauseReason)
	}
	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	err := a.w.Pause(ctx, name, reason)
	return a.state(name), err
}

// Resume is the admin API's resume; see webpkg.Pauser.
func (a admin) Resume(name string) (webpkg.JobState, error) {
	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	err := a.w.Resume(ctx, name)
	return a.state(name), err
}

// state returns whether the job runs here and whether it is paused.
func (a admin) state(name string) webpkg.JobState {
	w := a.w
	w.mu.Lock()
	sched := w.sched
	w.mu.Unlock()
	if sched == nil {
		return webpkg.JobState{}
	}
	p, paused := sched.Paused(name)
	st := webpkg.JobState{Running: sched.Running(name), Paused: paused}
	if paused {
		st.PausedReason, st.PausedAt, st.PausedBy = p.Reason, webpkg.UTC(p.At), p.By
	}
	return st
}

// checkNotPaused returns ErrJobPaused for a paused job: a run-now of it
// is refused (409) and recorded nowhere.
func (w *Worker) checkNotPaused(name string) error {
	if _, paused := w.Paused(name); paused {
		return fmt.Errorf("job %s: %w; resume it first", webpkg.Quote(name), ErrJobPaused)
	}
	return nil
}

// RecentRuns returns the job's newest n job_runs rows, newest first, for
// the status page.
func (a admin) RecentRuns(ctx context.Context, name string, n int) ([]webpkg.RunRecord, error) {
	ctx, cancel := context.WithTimeout(ctx, adminTimeout)
	defer cancel()
	d, err := a.w.handle.Init(ctx)
	if err != nil {
		return nil, err
	}
	rows, err := jobhistory.RecentRuns(ctx, d, name, n)
	if err != nil {
		return nil, err
	}
	out := make([]webpkg.RunRecord, 0, len(rows))
	for _, r := range rows {
		rec := webpkg.RunRecord{
			Job: r.Job, ScheduledAt: webpkg.UTC(r.ScheduledAt), StartedAt: webpkg.UTC(r.StartedAt), EndedAt: webpkg.UTC(r.EndedAt),
			Result: r.Result, Error: r.Error, RowsAffected: r.RowsAffected, Attempt: r.Attempt, JitterMS: r.Jitter.Milliseconds(),
		}
		out = append(out, rec)
	}
	return out, nil
}
