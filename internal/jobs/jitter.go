package jobs

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/sqlworker/worker/internal/schedule"
)

// CheckJitter returns an error when d is no valid Job.Jitter for the
// schedule s: not negative, whole milliseconds (job_runs.jitter_ms), and
// less than the shortest interval of s (schedule.MinInterval), so that a
// delayed run still starts before the next tick.
func CheckJitter(d time.Duration, s cron.Schedule) error {
	switch {
	case d < 0:
		return fmt.Errorf("must not be negative, got %s", d)
	case d%time.Millisecond != 0:
		return fmt.Errorf("must be a whole number of milliseconds, got %s", d)
	case d == 0 || s == nil:
		return nil
	}
	if iv := schedule.MinInterval(s, time.Now()); d >= iv {
		return fmt.Errorf("must be less than the schedule's interval (%s), got %s", iv, d)
	}
	return nil
}

// waitJitter waits a random duration in [0, Job.Jitter) before the run r
// and records it in r.Jitter and worker_job_jitter_seconds. It returns
// false when Stop came first: the tick is then counted as skipped, not run.
func (s *Scheduler) waitJitter(e *entry, r *Run) bool {
	if e.job.Jitter <= 0 {
		return true
	}
	r.Jitter = rand.N(e.job.Jitter).Truncate(time.Millisecond) // job_runs keeps milliseconds
	t := time.NewTimer(time.Until(r.ScheduledAt.Add(r.Jitter)))
	defer t.Stop()
	select {
	case <-t.C:
	case <-s.quit:
		s.metrics.ticksSkipped.WithLabelValues(e.job.Name).Inc()
		return false
	}
	s.metrics.jitter.WithLabelValues(e.job.Name).Observe(r.Jitter.Seconds())
	return true
}

// quitting reports whether Stop has begun.
func (s *Scheduler) quitting() bool {
	select {
	case <-s.quit:
		return true
	default:
		return false
	}
}

// checkJob returns an error naming the setting of j that is out of bounds
// (catch-up, retries, jitter); the config refuses them earlier, by field.
func checkJob(j Job) error {
	if err := CheckOverlap(j.Overlap); err != nil {
		return fmt.Errorf("overlap: %w", err)
	}
	if err := CheckCatchUp(j.CatchUp); err != nil {
		return fmt.Errorf("catch-up: %w", err)
	}
	if j.CatchUpLimit != 0 {
		if err := CheckCatchUpLimit(j.CatchUpLimit); err != nil {
			return fmt.Errorf("catch-up limit: %w", err)
		}
	}
	if err := CheckRetries(j.Retries); err != nil {
		return fmt.Errorf("retries: %w", err)
	}
	if j.RetryBackoff != 0 {
		if err := CheckRetryBackoff(j.RetryBackoff); err != nil {
			return fmt.Errorf("retry backoff: %w", err)
		}
	}
	if err := CheckJitter(j.Jitter, j.Schedule); err != nil {
		return fmt.Errorf("jitter: %w", err)
	}
	return nil
}
