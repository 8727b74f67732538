package jobs

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sqlworker/worker/internal/jobhistory"
)

// MaxBackfillTicks bounds the ticks of one Backfill: a larger range is
// refused, with ErrBackfillRange, rather than cut.
const MaxBackfillTicks = 1000

// ErrBackfillRange is wrapped by the error of a Backfill whose range is
// empty, reversed, in the future or holds more than MaxBackfillTicks ticks.
var ErrBackfillRange = errors.New("bad backfill range")

// BackfillOptions are the options of a Backfill.
type BackfillOptions struct {
	// DryRun lists the ticks and what would be done with each, and runs
	// nothing.
	DryRun bool
	// Rerun runs the ticks that have a success row in job_runs too.
	Rerun bool
}

// What Backfill did with a tick: BackfillTick.Status.
const (
	BackfillWouldRun  = "would_run" // dry run: the tick would run
	BackfillDone      = "done"      // it has a success row in job_runs: left alone
	BackfillRan       = "ran"       // it ran here: Run says how it ended
	BackfillSkipped   = "skipped"   // the job was busy and its overlap policy skipped it
	BackfillElsewhere = "elsewhere" // another replica has the tick (ran it, runs it, or is to)
	BackfillNotRun    = "not_run"   // the backfill stopped first (shutdown, or its request ended)
)

// BackfillTick is one tick of a Backfill and what became of it.
type BackfillTick struct {
	ScheduledAt time.Time
	Status      string
	Run         *Run // the run's last attempt, for BackfillRan and BackfillSkipped
}

// Backfill runs the job's ticks in [from, to], oldest first, one after the
// other, each through the same chain as a scheduled run with its own
// scheduled_at: under the job's overlap policy, and claimed through the
// Coordinator, so that replicas never run a tick twice. A tick with a
// success row in job_runs is left alone unless opts.Rerun. It refuses a
// range that is empty, reversed, ends in the future or holds more than
// MaxBackfillTicks ticks (ErrBackfillRange), and ErrUnknownJob. A done ctx
// or Stop ends it between ticks: the rest are BackfillNotRun. This
// worker's backfills of one job run one after the other, so that the
// second leaves alone what the first ran.
func (s *Scheduler) Backfill(ctx context.Context, name string, from, to time.Time, opts BackfillOptions) ([]BackfillTick, error) {
	e, ok := s.lookup(name)
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownJob, name)
	}
	ticks, err := backfillTicks(e.job, from.In(s.cfg.Location), to.In(s.cfg.Location), time.Now())
	if err != nil {
		return nil, err
	}
	if !opts.DryRun {
		// After the one before: it reads the rows that one wrote.
		e.backfill.Lock()
		defer e.backfill.Unlock()
	}
	done, err := s.succeeded(ctx, name, from, to)
	if err != nil {
		return nil, err
	}
	out := make([]BackfillTick, len(ticks))
	for i, t := range ticks {
		out[i] = BackfillTick{ScheduledAt: t, Status: BackfillWouldRun}
		if done[t.UTC()] && !opts.Rerun {
			out[i].Status = BackfillDone
		}
	}
	if opts.DryRun {
		return out, nil
	}
	for i := range out {
		if out[i].Status == BackfillDone {
			continue
		}
		if ctx.Err() != nil || s.quitting() {
			out[i].Status = BackfillNotRun
			continue
		}
		r, err := s.run(e, &Run{Job: name, ScheduledAt: out[i].ScheduledAt, CatchUp: true, backfill: true, rerun: opts.Rerun})
		out[i].Status, out[i].Run = backfillStatus(r, err)
	}
	return out, nil
}

// backfillTicks returns the job's ticks in [from, to].
func backfillTicks(j Job, from, to, now time.Time) ([]time.Time, error) {
	switch {
	case !from.Before(to):
		return nil, fmt.Errorf("%w: from %s is not before to %s", ErrBackfillRange, from.Format(time.RFC3339), to.Format(time.RFC3339))
	case to.After(now):
		return nil, fmt.Errorf("%w: to %s is in the future", ErrBackfillRange, to.Format(time.RFC3339))
	}
	var out []time.Time
	for t := j.Schedule.Next(from.Add(-time.Nanosecond)); !t.IsZero() && !t.After(to); t = j.Schedule.Next(t) {
		if len(out) == MaxBackfillTicks {
			return nil, fmt.Errorf("%w: more than %d ticks of job %q between %s and %s (the most one backfill runs)",
				ErrBackfillRange, MaxBackfillTicks, j.Name, from.Format(time.RFC3339), to.Format(time.RFC3339))
		}
		out = append(out, t)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: job %q has no tick between %s and %s", ErrBackfillRange, j.Name, from.Format(time.RFC3339), to.Format(time.RFC3339))
	}
	return out, nil
}

func (s *Scheduler) succeeded(ctx context.Context, name string, from, to time.Time) (map[time.Time]bool, error) {
	sdb, err := s.cfg.DB.Init(ctx)
	if err != nil {
		return nil, fmt.Errorf("cannot read job_runs: %w", err)
	}
	return jobhistory.SucceededTicks(ctx, sdb, name, from, to)
}

// backfillStatus is what became of a backfilled tick whose run returned r
// and err.
func backfillStatus(r *Run, err error) (string, *Run) {
	switch {
	case err != nil: // the scheduler stopped
		return BackfillNotRun, nil
	case r.Result == "": // not recorded here: another replica has the tick
		return BackfillElsewhere, nil
	case r.Result == Skipped:
		return BackfillSkipped, r
	}
	return BackfillRan, r
}
