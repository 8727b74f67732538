package worker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sqlworker/worker/internal/jobs"
	webpkg "github.com/sqlworker/worker/internal/web"
)

// BackfillOptions are the options of Backfill: DryRun lists the ticks and
// runs nothing; Rerun runs the ticks that have a success row too.
type BackfillOptions = jobs.BackfillOptions

// BackfillTick is a tick of a Backfill and what became of it (Status:
// BackfillRan and the others).
type BackfillTick = jobs.BackfillTick

// Backfill bounds, errors and statuses.
const (
	MaxBackfillTicks  = jobs.MaxBackfillTicks
	BackfillWouldRun  = jobs.BackfillWouldRun
	BackfillDone      = jobs.BackfillDone
	BackfillRan       = jobs.BackfillRan
	BackfillSkipped   = jobs.BackfillSkipped
	BackfillElsewhere = jobs.BackfillElsewhere
	BackfillNotRun    = jobs.BackfillNotRun
)

// ErrBackfillRange is wrapped by Backfill's error for a range that is
// reversed, ends in the future, has no tick or more than MaxBackfillTicks.
var ErrBackfillRange = jobs.ErrBackfillRange

// Backfill runs the scheduled job's ticks in [from, to], oldest first,
// one after the other, each as a scheduled run with its own scheduled_at
// (recorded in job_runs and the metrics), under the job's overlap policy
// and, on PostgreSQL, through the same claim as a scheduled tick, so that
// replicas never run a tick twice. A tick with a success row in job_runs
// is left alone unless opts.Rerun. It returns once each tick was run; a
// done ctx ends it between ticks. It is the admin API's POST
// /api/v1/jobs/{name}/backfill. Its error wraps ErrUnknownJob,
// ErrJobPaused for a paused job, ErrNotRunning before Start and once Stop
// was called, and ErrBackfillRange.
func (w *Worker) Backfill(ctx context.Context, name string, from, to time.Time, opts BackfillOptions) ([]BackfillTick, error) {
	sched, err := w.scheduler(phaseStarted)
	if err != nil {
		return nil, err
	}
	if !opts.DryRun {
		if err := w.checkNotPaused(name); err != nil {
			return nil, err
		}
	}
	ticks, err := sched.Backfill(ctx, name, from, to, opts)
	switch {
	case errors.Is(err, jobs.ErrUnknownJob):
		return nil, unknownJob(name, err)
	case errors.Is(err, ErrBackfillRange):
		return nil, fmt.Errorf("%w: %w", webpkg.ErrBadRequest, err)
	}
	return ticks, err
}

// Backfill is the admin API's backfill: see Worker.Backfill.
func (a admin) Backfill(ctx context.Context, name string, req webpkg.BackfillRequest) (*webpkg.BackfillResult, error) {
	ticks, err := a.w.Backfill(ctx, name, req.From, req.To, BackfillOptions{DryRun: req.DryRun, Rerun: req.Rerun})
	if err != nil {
		return nil, err
	}
	res := &webpkg.BackfillResult{Job: name, DryRun: req.DryRun, Counts: make(map[string]int), Ticks: make([]webpkg.BackfillTick, len(ticks))}
	for i, t := range ticks {
		res.Counts[t.Status]++
		res.Ticks[i] = webpkg.BackfillTick{ScheduledAt: webpkg.UTC(t.ScheduledAt), Status: t.Status}
		if t.Run != nil {
			res.Ticks[i].Run = record(t.Run)
		}
	}
	return res, nil
}
