package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/sqlworker/worker/internal/faultinject/leak"
)

// The chain every run goes through, outermost first (see New): record
// (metrics, log, history), skipIfPaused, overlap (the job's running slot,
// see Overlap), coordinate (the claim among
// replicas, see Coordinator), track, recoverPanic, withTimeout, then runJob
// (the idempotent Init, then the job).

// handler runs one step of a run.
type handler func(ctx context.Context, e *entry, r *Run) error

// middleware wraps a handler.
type middleware func(next handler) handler

// chain wraps final in the middlewares, the first outermost.
func chain(final handler, mws ...middleware) handler {
	h := final
	for i := len(mws) - 1; i >= 0; i-- {
		h = mws[i](h)
	}
	return h
}

// record times the run, classifies its result and records it in metrics,
// the log and the run history.
func (s *Scheduler) record(next handler) handler {
	return func(ctx context.Context, e *entry, r *Run) error {
		err := next(ctx, e, r)
		defer s.freeSlot(e, r)
		if errors.Is(err, ErrNotClaimed) {
			return err // another replica runs and records it
		}
		if !r.recorded && r.EndedAt.IsZero() {
			r.EndedAt = time.Now() // a recorded run keeps its row's, a run in the slot its end there
		}
		r.Err = err
		r.Result = s.classify(err)
		if a, ok := ctx.Value(activeKey{}).(*active); ok && !r.ownsRecord && !a.recorded.CompareAndSwap(false, true) {
			return err // Stop already recorded it as abandoned
		}
		s.planRetry(e, r)
		s.finishEntry(e, r)
		return err
	}
}

func (s *Scheduler) classify(err error) Result {
	var pe *PanicError
	switch {
	case err == nil:
		return Success
	case errors.Is(err, ErrSkipped), errors.Is(err, ErrPaused):
		return Skipped
	case errors.As(err, &pe):
		return Panic
	case errors.Is(err, errTimeout):
		return Timeout
	case errors.Is(err, ErrReplaced):
		return Cancelled
	case s.runCtx.Err() != nil:
		return Cancelled
	}
	return Failure
}

// finish records a finished run in metrics, the log and the history table,
// where a successful run of a job with OmitSuccessRows leaves no row.
func (s *Scheduler) finish(r *Run) {
	e, _ := s.lookup(r.Job)
	s.finishEntry(e, r)
}

// finishEntry is finish for a run of e, which Replace may have replaced
// since: the run is recorded under the settings it ran with.
func (s *Scheduler) finishEntry(e *entry, r *Run) {
	var jm *jobMetrics
	if e != nil {
		jm = e.m
	} else {
		jm = s.metrics.init(r.Job) // cannot happen: every run is of an entry
	}
	if r.retryIn == 0 { // an attempt a retry follows is counted by the retry (retries_total)
		jm.runs[r.Result].Inc()
	}
	if r.gaveUp {
		s.metrics.retriesGivenUp.WithLabelValues(r.Job).Inc()
	}
	if r.CatchUp && r.retryIn == 0 && e != nil {
		s.countCaughtUp(e, r)
	}
	if r.Result != Skipped {
		jm.duration.Observe(r.EndedAt.Sub(r.StartedAt).Seconds())
		// Caught-up runs and retries are late on purpose: their delay
		// would hide the scheduler's own lateness in the quantiles.
		// Claimed runs count from the claim: the body starts then, after
		// the wait for a connection and the round trip to the server.
		if !r.ScheduledAt.IsZero() && !r.CatchUp && r.Attempt <= 1 {
			start := r.StartedAt
			if !r.claimedAt.IsZero() {
				start = r.claimedAt
			}
			jm.startDelay.Observe(max(0, start.Sub(r.ScheduledAt.Add(r.Jitter)).Seconds()))
		}
	}
	if r.Result == Success {
		if e != nil && setMax(&e.lastSuccess, r.EndedAt.UnixNano()) {
			jm.lastSuccess.Set(unixSeconds(r.EndedAt))
		}
	}
	s.log(r)
	var err error
	if r.recorded || !e.hasRow(r.Result) {
		err = s.history.Err()
	} else if err = s.history.add(r); err != nil {
		s.logger.Error("Cannot record job run", "job", r.Job, "result", r.Result, "err", err)
	}
	if s.cfg.OnFinish != nil {
		s.cfg.OnFinish(r, err)
	}
	if e != nil {
		s.forgetRemoved(e)
	}
}

// hasRow reports whether a run of e with result writes a job_runs row: all
// do but the successes of a job with OmitSuccessRows. e may be nil.
func (e *entry) hasRow(result Result) bool {
	return result != Success || e == nil || !e.job.OmitSuccessRows
}

// setMax stores v in a unless a holds more; it reports whether it stored.
// Runs can finish out of order: the newest success is the one that counts.
func setMax(a *atomic.Int64, v int64) bool {
	for {
		old := a.Load()
		if v < old {
			return false
		}
		if a.CompareAndSwap(old, v) {
			return true
		}
	}
}

func (s *Scheduler) log(r *Run) {
	if r.Result == Success && !s.logger.Enabled(context.Background(), slog.LevelDebug) {
		return // spares building the attributes of a line that is dropped
	}
	attrs := []any{"job", r.Job, "result", r.Result, "duration", r.EndedAt.Sub(r.StartedAt), "rows", r.RowsAffected}
	if r.Attempt > 1 {
		attrs = append(attrs, "attempt", r.Attempt)
	}
	switch {
	case r.retryIn > 0:
		attrs = append(attrs, "retry_in", r.retryIn)
	case r.gaveUp:
		attrs = append(attrs, "retry", "given up: the next tick comes first")
	}
	var pe *PanicError
	switch r.Result {
	case Success:
		s.logger.Debug("Job run", attrs...)
	case Skipped:
		s.logger.Warn("Job run skipped", append(attrs, "err", r.Err)...)
	case Panic:
		if errors.As(r.Err, &pe) {
			attrs = append(attrs, "stack", string(pe.Stack))
		}
		s.logger.Error("Job run panicked", append(attrs, "err", r.Err)...)
	default:
		s.logger.Warn("Job run failed", append(attrs, "err", r.Err)...)
	}
}

// track exports the run as in progress. The gauge counts the runs in
// progress rather than being set to 1 and back to 0, so that no run that
// ends, whatever else is going on, can clear what another one set.
func (s *Scheduler) track(next handler) handler {
	return func(ctx context.Context, e *entry, r *Run) error {
		g := e.m.running
		g.Inc()
		defer g.Dec()
		return next(ctx, e, r)
	}
}

// recoverPanic turns a panic into a *PanicError, so one bad job cannot take
// the worker down.
func recoverPanic(next handler) handler {
	return func(ctx context.Context, e *entry, r *Run) (err error) {
		defer func() {
			if v := recover(); v != nil {
				err = &PanicError{Value: v, Stack: debug.Stack()}
			}
		}()
		return next(ctx, e, r)
	}
}

var errTimeout = errors.New("timeout")

// withTimeout bounds the run by the job's timeout.
func (s *Scheduler) withTimeout(next handler) handler {
	return func(ctx context.Context, e *entry, r *Run) error {
		if e.job.Timeout <= 0 {
			return next(ctx, e, r)
		}
		ctx, cancel := context.WithTimeout(ctx, e.job.Timeout)
		defer cancel()
		err := next(ctx, e, r)
		if err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) && s.runCtx.Err() == nil {
			return fmt.Errorf("%w after %s: %w", errTimeout, e.job.Timeout, err)
		}
		return err
	}
}

// runJob is the end of the chain: the idempotent Init, then the job on the
// handle it returned.
func (s *Scheduler) runJob(ctx context.Context, e *entry, r *Run) error {
	db, err := s.cfg.DB.Init(ctx)
	if err != nil {
		return err
	}
	if leak.Enabled {
		if err := leak.AfterInit(ctx, db); err != nil {
			return err
		}
	}
	n, err := e.job.Func(ctx, db)
	r.RowsAffected = n
	return err
}
