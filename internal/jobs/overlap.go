package jobs

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Overlap is a job's policy for a run that comes while the job's previous
// run is still going: a tick, a retry, a run-now or a backfilled tick.
type Overlap string

// The overlap policies.
const (
	// OverlapSkip skips the new run and records it skipped: the default.
	OverlapSkip Overlap = "skip"
	// OverlapBufferOne makes the new run wait for the running one and
	// start when it ends; a run that comes while one already waits is
	// skipped (Temporal's BufferOne).
	OverlapBufferOne Overlap = "buffer_one"
	// OverlapReplace cancels the running run's context, with cause
	// ErrReplaced, and starts the new run once the old one returned,
	// never both at once; the old run is recorded cancelled. A run that
	// waits so is itself replaced, and recorded skipped, by a newer one.
	OverlapReplace Overlap = "replace"
)

// ErrReplaced is the cause of the context of a run that a newer run
// replaced (OverlapReplace); such a run is recorded as cancelled.
var ErrReplaced = errors.New("replaced by a newer run (overlap: replace)")

// errDisplaced is the error of a waiting run that a newer one replaced.
var errDisplaced = fmt.Errorf("%w: a newer run replaced this waiting one (overlap: replace)", ErrSkipped)

// CheckOverlap returns an error when p is no valid Overlap; "" is valid.
func CheckOverlap(p Overlap) error {
	switch p {
	case "", OverlapSkip, OverlapBufferOne, OverlapReplace:
		return nil
	}
	return fmt.Errorf("must be %s, %s or %s, got %q", OverlapSkip, OverlapBufferOne, OverlapReplace, string(p))
}

func overlapPolicy(j Job) Overlap {
	if j.Overlap == "" {
		return OverlapSkip
	}
	return j.Overlap
}

// slot is the part of a job's state that lets runs wait for its running
// slot (state.running) and replace the run that holds it; guarded by mu.
type slot struct {
	mu      sync.Mutex
	cancel  context.CancelCauseFunc // of the run in the slot, nil between runs
	freed   chan struct{}           // closed, and renewed, each time the slot is released
	waiter  chan struct{}           // the waiting run's; closed when a newer run displaces it
	replace bool                    // the waiting run replaces the running one
}

func (sl *slot) freedLocked() chan struct{} {
	if sl.freed == nil {
		sl.freed = make(chan struct{})
	}
	return sl.freed
}

// release frees the job's running slot and wakes the runs waiting for it.
// Every holder of the slot releases it here, never by running.Store.
func (e *entry) release() {
	sl := &e.slot
	sl.mu.Lock()
	defer sl.mu.Unlock()
	e.running.Store(false)
	close(sl.freedLocked())
	sl.freed = make(chan struct{})
}

// hold registers the run in the slot, whose context cancel cancels: a run
// waiting to replace it cancels it at once.
func (e *entry) hold(cancel context.CancelCauseFunc) {
	sl := &e.slot
	sl.mu.Lock()
	defer sl.mu.Unlock()
	sl.cancel = cancel
	if sl.replace {
		cancel(ErrReplaced)
	}
}

func (e *entry) unhold() {
	e.slot.mu.Lock()
	e.cancel = nil
	e.slot.mu.Unlock()
}

// acquire takes the job's running slot for r under the job's overlap
// policy: at once when it is free; otherwise skip returns an error wrapping
// ErrSkipped, buffer_one and replace wait for the slot (replace cancelling
// the run in it) unless another run already waits (buffer_one) or a newer
// one displaces this one (replace).
func (s *Scheduler) acquire(ctx context.Context, e *entry, r *Run) error {
	if e.running.CompareAndSwap(false, true) {
		return nil
	}
	p := overlapPolicy(e.job)
	if p == OverlapSkip {
		return ErrSkipped
	}
	sl := &e.slot
	sl.mu.Lock()
	if sl.waiter != nil {
		if p == OverlapBufferOne {
			sl.mu.Unlock()
			return fmt.Errorf("%w (overlap: buffer_one: another run waits already)", ErrSkipped)
		}
		close(sl.waiter)
	}
	w := make(chan struct{})
	sl.waiter, sl.replace = w, p == OverlapReplace
	if sl.replace && sl.cancel != nil {
		sl.cancel(ErrReplaced)
	}
	sl.mu.Unlock()
	if err := s.waitSlot(ctx, e, w); err != nil {
		return err
	}
	s.restart(r)
	return nil
}

// waitSlot waits until the slot is free and takes it, or until w is closed
// (a newer run displaced this one), Stop begins or ctx is done.
func (s *Scheduler) waitSlot(ctx context.Context, e *entry, w chan struct{}) error {
	sl := &e.slot
	for {
		sl.mu.Lock()
		select {
		case <-w:
			sl.mu.Unlock()
			return errDisplaced
		default:
		}
		if e.running.CompareAndSwap(false, true) {
			sl.waiter, sl.replace = nil, false
			sl.mu.Unlock()
			return nil
		}
		freed := sl.freedLocked()
		sl.mu.Unlock()
		select {
		case <-freed:
		case <-w:
		case <-s.quit:
			return s.stopWaiting(e, w, ErrStopped)
		case <-ctx.Done():
			return s.stopWaiting(e, w, ctx.Err())
		}
	}
}

// stopWaiting gives up the wait of w, which is skipped.
func (s *Scheduler) stopWaiting(e *entry, w chan struct{}, why error) error {
	sl := &e.slot
	sl.mu.Lock()
	if sl.waiter == w {
		sl.waiter, sl.replace = nil, false
	}
	sl.mu.Unlock()
	return fmt.Errorf("%w: stopped waiting: %w", ErrSkipped, why)
}

// overlap runs a run in the job's running slot, taken under the job's
// Overlap policy, and with a context the next run can cancel (replace). A
// run that does not get the slot is skipped; a Skipper records a
// scheduled tick skipped once across the replicas.
func (s *Scheduler) overlap(next handler) handler {
	return func(ctx context.Context, e *entry, r *Run) error {
		if !r.slotHeld { // else its catch-up sequence took the slot for all its runs
			if err := s.acquire(ctx, e, r); err != nil {
				return s.skipped(ctx, e, r, err)
			}
			if overlapPolicy(e.job) == OverlapSkip {
				defer e.release()
			} else {
				r.holdsSlot = true // record frees it once the run is recorded
			}
		}
		runCtx, cancel := context.WithCancelCause(ctx)
		defer cancel(nil)
		e.hold(cancel)
		defer e.unhold()
		err := next(runCtx, e, r)
		if err != nil && errors.Is(context.Cause(runCtx), ErrReplaced) && !errors.Is(err, ErrReplaced) {
			err = fmt.Errorf("%w: %w", ErrReplaced, err)
		}
		if r.EndedAt.IsZero() {
			r.EndedAt = time.Now() // before the slot is freed: the next run starts after it
		}
		return err
	}
}

// freeSlot frees the job's running slot that r took under buffer_one or
// replace, once r is recorded: the run that waits for it starts after the
// row is written, which on SQLite it would otherwise hold the write lock
// against (a SQL job's transaction holds it for the whole run). Under skip
// the slot is freed as the run returns, so that a slow history write never
// skips the next tick. A removed job's series go now if they could not
// before (see forgetRemoved).
func (s *Scheduler) freeSlot(e *entry, r *Run) {
	if r.holdsSlot {
		r.holdsSlot = false
		e.release()
		s.forgetRemoved(e)
	}
}

// skipped is the error of a run that did not get the slot: err, or for a
// scheduled tick, the Skipper's, which records it skipped once across the
// replicas.
func (s *Scheduler) skipped(ctx context.Context, e *entry, r *Run, err error) error {
	if !errors.Is(err, ErrSkipped) || errors.Is(err, ErrStopped) {
		return err
	}
	if sk, ok := s.cfg.Coordinator.(Skipper); ok && !r.manual && !r.backfill && !e.job.PerReplica && r.takenOver == nil && r.Attempt <= 1 {
		return sk.Skip(ctx, s.tick(e, r))
	}
	return err
}
