package jobs

import (
	"errors"
	"fmt"
	"time"

	"github.com/sqlworker/worker/internal/db"
)

// Retry bounds and defaults (Job.Retries, Job.RetryBackoff).
const (
	// MaxRetries bounds Job.Retries.
	MaxRetries = 10
	// DefaultRetryBackoff is the wait before the first retry when
	// Job.RetryBackoff is 0.
	DefaultRetryBackoff = time.Second
	// MaxRetryBackoff bounds Job.RetryBackoff and caps every wait between
	// attempts, which doubles from one retry to the next.
	MaxRetryBackoff = time.Hour
)

// errRetryable marks an error as retryable; see Retryable.
var errRetryable = errors.New("retryable")

type retryableError struct{ err error }

func (e retryableError) Error() string        { return e.err.Error() }
func (e retryableError) Unwrap() error        { return e.err }
func (e retryableError) Is(target error) bool { return target == errRetryable }

// MarkRetryable wraps err so that Retryable reports true for it: a Go job
// returns it for a failure of its own that can pass, such as a remote
// service that is down. It returns nil for nil.
func MarkRetryable(err error) error {
	if err == nil {
		return nil
	}
	return retryableError{err}
}

// Retryable reports whether a finished run's failure can pass by itself, so
// that another attempt may succeed: a timeout of the job's own, SQLite's
// SQLITE_BUSY or SQLITE_LOCKED (another connection held the lock past the
// busy timeout), or an error marked with MarkRetryable. Everything else is
// not: constraint violations, syntax errors and other failures of the SQL
// itself fail the same way again; a panic is a bug; a cancelled or skipped
// run was stopped on purpose.
func Retryable(r *Run) bool {
	switch r.Result {
	case Timeout:
		return true
	case Failure:
		return db.IsBusy(r.Err) || errors.Is(r.Err, errRetryable)
	}
	return false
}

// CheckRetries returns an error when n is no valid Job.Retries.
func CheckRetries(n int) error {
	if n < 0 || n > MaxRetries {
		return fmt.Errorf("must be between 0 and %d, got %d", MaxRetries, n)
	}
	return nil
}

// CheckRetryBackoff returns an error when d is no valid Job.RetryBackoff:
// positive, whole milliseconds, at most MaxRetryBackoff.
func CheckRetryBackoff(d time.Duration) error {
	switch {
	case d < time.Millisecond:
		return fmt.Errorf("must be at least 1ms, got %s", d)
	case d%time.Millisecond != 0:
		return fmt.Errorf("must be a whole number of milliseconds, got %s", d)
	case d > MaxRetryBackoff:
		return fmt.Errorf("must be at most %s, got %s", MaxRetryBackoff, d)
	}
	return nil
}

// backoff returns the wait after the given attempt failed: base doubled for
// each attempt before it, at most MaxRetryBackoff.
func backoff(base time.Duration, attempt int) time.Duration {
	if base <= 0 {
		base = DefaultRetryBackoff
	}
	d := base
	for i := 1; i < attempt && d < MaxRetryBackoff; i++ {
		d *= 2
	}
	return min(d, MaxRetryBackoff)
}

// planRetry decides, for a finished attempt, whether another follows: it
// sets r.retryIn to the wait before it, or r.gaveUp when the failure was
// retryable and attempts were left, but the wait would end at or after the
// job's next scheduled time (a retry must never overlap the next tick's
// run) or the scheduler is stopping.
func (s *Scheduler) planRetry(e *entry, r *Run) {
	if e.job.Retries <= 0 || max(1, r.Attempt) > e.job.Retries || !Retryable(r) {
		return
	}
	d := backoff(e.job.RetryBackoff, max(1, r.Attempt))
	e.mu.Lock()
	next := e.next
	e.mu.Unlock()
	switch {
	case s.quitting():
		r.gaveUp = true
	case !next.IsZero() && !time.Now().Add(d).Before(next):
		r.gaveUp = true
	default:
		r.retryIn = d
	}
}

// retryAfter waits r.retryIn after the attempt r, which is still
// registered as a (so that Stop waits for the wait too), and returns the
// next attempt, registered as in flight, or nil when the scheduler stopped
// meanwhile: then r's result is final and counted as such.
func (s *Scheduler) retryAfter(e *entry, r *Run) (*Run, *active) {
	t := time.NewTimer(r.retryIn)
	defer t.Stop()
	select {
	case <-t.C:
	case <-s.quit:
	}
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		s.giveUp(r)
		return nil, nil
	}
	next := &Run{Job: r.Job, ScheduledAt: r.ScheduledAt, Attempt: max(1, r.Attempt) + 1, Jitter: r.Jitter, CatchUp: r.CatchUp, manual: r.manual, runNow: r.runNow, slotHeld: r.slotHeld, backfill: r.backfill, rerun: r.rerun}
	a := s.beginLocked(next)
	s.mu.Unlock()
	s.metrics.retries.WithLabelValues(r.Job).Inc()
	s.logger.Info("Retrying job run", "job", r.Job, "attempt", next.Attempt, "after", r.retryIn)
	return next, a
}

// giveUp counts r, an attempt recorded as followed by a retry that never
// started, as its run's final result.
func (s *Scheduler) giveUp(r *Run) {
	s.metrics.runs.WithLabelValues(r.Job, string(r.Result)).Inc()
	s.metrics.retriesGivenUp.WithLabelValues(r.Job).Inc()
	s.logger.Warn("Job retry given up: the worker is stopping", "job", r.Job, "attempt", max(1, r.Attempt))
}
