package jobs

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/robfig/cron/v3"
)

// Coordinator makes replicas that share one database run each scheduled
// tick once (package internal/claim on PostgreSQL). A nil Config.Coordinator
// means a single node: every tick runs here, as on SQLite.
//
// Only scheduled ticks are coordinated; RunOnce and RunAtStart runs are not.
// A tick goes: Acquire before the chain's track step (after skipIfRunning),
// the body on Hold.Context, which the Coordinator cancels when the lease is
// lost, then Release with the body's error before the run is recorded. A
// refused Release turns the run into a failure, so that a fenced run never
// records a success.
type Coordinator interface {
	// Acquire claims the tick for this replica. It returns an error
	// wrapping ErrNotClaimed when another replica has the tick (the run is
	// then not recorded here), and one wrapping ErrSkipped when another
	// tick of the job runs elsewhere.
	Acquire(ctx context.Context, t Tick) (Hold, error)
}

// Tick is a scheduled run to coordinate.
type Tick struct {
	Job         string
	ScheduledAt time.Time
	Schedule    cron.Schedule
}

// Hold is this replica's claim on a tick, while its body runs.
type Hold interface {
	// ScheduledAt is the tick held: earlier than the one acquired when a
	// dead replica's run of an earlier tick was taken over.
	ScheduledAt() time.Time
	// Context is the run's context, cancelled when the claim is lost.
	Context() context.Context
	// Release records the run's outcome (runErr nil: success); it fails
	// when the claim was lost meanwhile.
	Release(ctx context.Context, runErr error) error
}

// ErrNotClaimed is wrapped by a Coordinator's error when another replica
// runs the tick: the run is neither counted nor recorded on this replica.
var ErrNotClaimed = errors.New("tick claimed by another replica")

// releaseTimeout bounds Release, which runs even when the run was cancelled.
const releaseTimeout = 5 * time.Second

// coordinate claims a scheduled tick before the run and releases it after.
func (s *Scheduler) coordinate(next handler) handler {
	return func(ctx context.Context, e *entry, r *Run) error {
		if s.cfg.Coordinator == nil || !r.tick {
			return next(ctx, e, r)
		}
		h, err := s.cfg.Coordinator.Acquire(ctx, Tick{Job: e.job.Name, ScheduledAt: r.ScheduledAt, Schedule: e.job.Schedule})
		if err != nil {
			if errors.Is(err, ErrNotClaimed) || errors.Is(err, ErrSkipped) {
				return err
			}
			return fmt.Errorf("cannot claim the tick: %w", err)
		}
		r.ScheduledAt = h.ScheduledAt()
		runCtx := h.Context()
		err = next(runCtx, e, r)
		if cause := context.Cause(runCtx); err != nil && cause != nil && !errors.Is(cause, context.Canceled) && ctx.Err() == nil {
			err = fmt.Errorf("%w: %w", cause, err)
		}
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
		defer cancel()
		if rerr := h.Release(rctx, err); rerr != nil {
			return errors.Join(err, rerr)
		}
		return err
	}
}
