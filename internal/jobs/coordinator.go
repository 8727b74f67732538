package jobs

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/sqlworker/worker/internal/jobhistory"
)

// Coordinator makes replicas that share one database run each scheduled
// tick once (package internal/claim on PostgreSQL). A nil Config.Coordinator
// means a single node: every tick runs here, as on SQLite.
//
// Ticks are coordinated, caught-up ones and retries included, and so are
// RunOnce runs (Tick.RunNow), so that a run-now on one replica answers
// "running" while another runs the job; RunAtStart runs, and every run of
// a Job.PerReplica, are not.
// A tick goes: Acquire before the chain's track step (after overlap),
// Keep for the run's context, which the Coordinator cancels when the claim
// is lost, the body, then Release with the body's error before the run is
// recorded (a Recorder's release writes the run's job_runs row itself). A
// refused Release turns the run into a failure, so that a fenced run never
// records a success.
type Coordinator interface {
	// Acquire claims the tick for this replica. It returns an error
	// wrapping ErrNotClaimed when another replica has the tick (the run is
	// then not recorded here), and one wrapping ErrSkipped when another
	// tick of the job runs elsewhere.
	Acquire(ctx context.Context, t Tick) (Claim, error)
}

// Scanner is a Coordinator that also takes over, between ticks, the runs of
// replicas that died. Scan runs until ctx is done (from Start to the
// beginning of Stop), takes over runs of the jobs that jobNames returns
// (the scheduler's, which a Replace changes), and hands each to run, which
// starts it through the chain in the background and returns.
type Scanner interface {
	Scan(ctx context.Context, jobNames func() []string, run func(job string, c Claim))
}

// Skipper is a Coordinator that records a tick skipped once across the
// replicas. overlap calls Skip, instead of recording the skip here
// alone, for a scheduled tick (not a retry, nor a taken-over or manual run)
// that finds the job's previous run still going on this replica. Skip
// returns an error wrapping ErrSkipped when this replica is to record the
// tick skipped, and one wrapping ErrNotClaimed when another replica has it.
type Skipper interface {
	Skip(ctx context.Context, t Tick) error
}

// Tick is a scheduled run to coordinate: a tick cron fired, a missed one
// caught up, or a retry of either (Attempt > 1), which claims its tick
// again after its own failed attempt.
type Tick struct {
	Job         string
	ScheduledAt time.Time
	Schedule    cron.Schedule
	Attempt     int
	// RunNow marks a run asked for through RunOnce (the admin API's run),
	// claimed at the time it was asked for so that one run of a job goes
	// at a time across the replicas: it is no tick of the schedule, and
	// the Coordinator checks no earlier tick for it.
	RunNow bool
	// Overlap is the job's policy: under buffer_one and replace, a tick
	// that finds another run of the job going on another replica waits
	// for it (replace asking it to stop) rather than being skipped.
	Overlap Overlap
	// Backfill marks a past tick asked for through Backfill: the
	// Coordinator checks no earlier tick for it, and may run it when its
	// tick was marked missed or skipped, or failed.
	Backfill bool
	// Rerun, with Backfill, lets a tick that succeeded before run again.
	Rerun bool
	// Paused marks a tick skipped because its job is paused, which every
	// replica skips: the Skipper waits for it to be due by the server's
	// clock, so that one replica records it even when every replica's
	// clock runs ahead. A tick skipped because the job runs here is not
	// waited for: a replica whose clock runs ahead leaves it to the
	// others, which may run it.
	Paused bool
}

// tick is the Tick of the run r of e.
func (s *Scheduler) tick(e *entry, r *Run) Tick {
	return Tick{Job: e.job.Name, ScheduledAt: r.ScheduledAt, Schedule: e.job.Schedule, Attempt: max(1, r.Attempt),
		RunNow: r.runNow, Overlap: overlapPolicy(e.job), Backfill: r.backfill, Rerun: r.rerun}
}

// Claim is this replica's claim on a tick.
type Claim interface {
	// ScheduledAt is the tick claimed: earlier than the one acquired when
	// a dead replica's run of an earlier tick was taken over.
	ScheduledAt() time.Time
	// Keep starts keeping the claim while the body runs, and returns the
	// run's context: derived from ctx, and cancelled when the claim is lost.
	Keep(ctx context.Context) context.Context
	// Release records the run's outcome (runErr nil: success) and stops
	// keeping the claim; it fails when the claim was lost meanwhile. A
	// runErr wrapping ErrStopped is a run that Stop cut off, which the
	// Coordinator may hand to another replica rather than fail.
	Release(ctx context.Context, runErr error) error
}

// Recorder is a Claim that can release itself in the statement that writes
// the run's job_runs row: one round trip and one commit for both, at every
// tick. coordinate calls it, instead of Release, for a run that Stop did not
// cut off and whose row is to be written.
type Recorder interface {
	// ReleaseRecording is Release(ctx, runErr) that also writes row, the
	// run's job_runs row, when the release is accepted, and reports
	// whether it wrote it. When it did not (the release was refused, or
	// failed, or is a hand-over to another replica, which writes no row
	// here), the run is recorded the usual way, with the error.
	ReleaseRecording(ctx context.Context, runErr error, row jobhistory.RunRow) (recorded bool, err error)
}

// ErrNotClaimed is wrapped by a Coordinator's error when another replica
// runs the tick: the run is neither counted nor recorded on this replica.
var ErrNotClaimed = errors.New("tick claimed by another replica")

// releaseTimeout bounds Release, which runs even when the run was cancelled.
const releaseTimeout = 5 * time.Second

// coordinate claims a scheduled tick before the run and releases it after.
func (s *Scheduler) coordinate(next handler) handler {
	return func(ctx context.Context, e *entry, r *Run) error {
		if s.cfg.Coordinator == nil || (r.manual && !r.runNow) || e.job.PerReplica {
			return next(ctx, e, r)
		}
		var c Claim
		if r.takenOver != nil {
			c = r.takenOver
		} else {
			var err error
			c, err = s.acquireClaim(ctx, e, r)
			switch {
			case r.runNow && errors.Is(err, ErrNotClaimed):
				// Another replica has the run's own time: it runs the job.
				return fmt.Errorf("%w: %w", ErrSkipped, err)
			case errors.Is(err, ErrNotClaimed) || errors.Is(err, ErrSkipped):
				return err
			case err != nil:
				return fmt.Errorf("cannot claim the tick: %w", err)
			}
		}
		r.ScheduledAt = c.ScheduledAt()
		if overlapPolicy(e.job) != OverlapSkip && r.takenOver == nil {
			s.restart(r) // its claim may have waited for another replica's run
		}
		r.claimedAt = time.Now()
		runCtx := c.Keep(ctx)
		err := next(runCtx, e, r)
		// A replaced run's cause is ErrReplaced, here or from the claim.
		if cause := context.Cause(runCtx); err != nil && cause != nil && !errors.Is(cause, context.Canceled) && !errors.Is(err, cause) &&
			(ctx.Err() == nil || errors.Is(cause, ErrReplaced)) {
			err = fmt.Errorf("%w: %w", cause, err)
		}
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
		defer cancel()
		released := err
		if err != nil && ctx.Err() != nil && !errors.Is(context.Cause(ctx), ErrReplaced) {
			released = fmt.Errorf("%w: %w", ErrStopped, err) // cut off by Stop: the Coordinator may hand it on
		} else if rec, ok := c.(Recorder); ok {
			if done, rerr := s.releaseRecording(rctx, ctx, rec, e, r, err); done || rerr != nil {
				return errors.Join(err, rerr)
			}
		}
		if rerr := c.Release(rctx, released); rerr != nil {
			return errors.Join(err, rerr)
		}
		return err
	}
}

// acquireClaim claims r's tick. A tick that may wait for another
// replica's run (buffer_one, replace) stops waiting when Stop begins.
func (s *Scheduler) acquireClaim(ctx context.Context, e *entry, r *Run) (Claim, error) {
	t := s.tick(e, r)
	if t.Overlap == OverlapSkip {
		return s.cfg.Coordinator.Acquire(ctx, t)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-s.quit:
			cancel()
		case <-ctx.Done():
		}
	}()
	return s.cfg.Coordinator.Acquire(ctx, t)
}

// releaseRecording releases the claim of the run r, which ended with runErr,
// in the statement that writes its job_runs row, when the run is to have a
// row and Stop has not recorded it meanwhile: the run is then recorded
// here (record leaves it to r.recorded). It reports false and no error when
// the claim is to be released the usual way instead. A claim it released
// without the row (refused, or failed) is not released again: its error
// makes the run a failure, recorded the usual way.
func (s *Scheduler) releaseRecording(ctx, runCtx context.Context, rec Recorder, e *entry, r *Run, runErr error) (bool, error) {
	result := s.classify(runErr)
	if !e.hasRow(result) {
		return false, nil
	}
	if a, ok := runCtx.Value(activeKey{}).(*active); ok {
		if !a.recorded.CompareAndSwap(false, true) {
			return false, nil // Stop recorded it as abandoned: release it alone
		}
		r.ownsRecord = true
	}
	r.EndedAt, r.Err, r.Result = time.Now(), runErr, result
	recorded, err := rec.ReleaseRecording(ctx, runErr, newHistoryRow(r))
	r.recorded = recorded
	return true, err
}

// startScan starts the Coordinator's takeover scan, if it has one; called
// from Start with mu held.
func (s *Scheduler) startScan() {
	sc, ok := s.cfg.Coordinator.(Scanner)
	if !ok {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.stopScan = cancel
	s.wg.Go(func() { sc.Scan(ctx, s.claimedJobNames, s.runTakenOver) })
}

// runTakenOver runs a tick taken over by the scan, in flight from here so
// that Stop waits for it. A claim the chain did not reach (the job was
// removed or still running here, or the scheduler stopped) is released as
// cut off, for the Coordinator to hand on.
func (s *Scheduler) runTakenOver(job string, c Claim) {
	e, ok := s.lookup(job)
	tc := &trackedClaim{Claim: c}
	r := &Run{Job: job, ScheduledAt: c.ScheduledAt(), takenOver: tc}
	s.mu.Lock()
	if !ok || s.stopped {
		s.mu.Unlock()
		s.releaseUnrun(tc, job, ErrStopped)
		return
	}
	a := s.beginLocked(r)
	s.mu.Unlock()
	go func() {
		s.exec(e, r, a)
		s.releaseUnrun(tc, job, ErrSkipped)
	}()
}

func (s *Scheduler) releaseUnrun(c *trackedClaim, job string, why error) {
	if c.released.Load() {
		return
	}
	s.logger.Warn("Tick taken over but not run", "job", job, "scheduled_at", c.ScheduledAt(), "err", why)
	ctx, cancel := context.WithTimeout(context.Background(), releaseTimeout)
	defer cancel()
	_ = c.Release(ctx, fmt.Errorf("%w: not run: %w", ErrStopped, why))
}

// trackedClaim remembers whether the chain released it.
type trackedClaim struct {
	Claim
	released atomic.Bool
}

func (c *trackedClaim) Release(ctx context.Context, runErr error) error {
	c.released.Store(true)
	return c.Claim.Release(ctx, runErr)
}
