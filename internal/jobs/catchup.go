package jobs

import (
	"context"
	"fmt"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/sqlworker/worker/internal/jobhistory"
)

// CatchUp is a job's policy for the ticks it missed while the worker was
// down or paused. At Start the Scheduler takes the job's last tick from
// job_runs (its newest scheduled_at), and every tick of the schedule after
// it, up to Start, is missed; while running, the ticks cron passes over
// after a pause (SIGSTOP, a suspended VM) are missed too. The missed ticks
// that are not run are counted in worker_job_ticks_skipped_total. A job
// with no row in job_runs has missed nothing.
type CatchUp string

// The catch-up policies.
const (
	// CatchUpSkip runs none of the ticks missed while the worker was down,
	// and after a pause only the oldest, as cron does: the default.
	CatchUpSkip CatchUp = "skip"
	// CatchUpOnce runs the newest missed tick, once.
	CatchUpOnce CatchUp = "once"
	// CatchUpAll runs the newest Job.CatchUpLimit missed ticks, oldest
	// first, one after the other.
	CatchUpAll CatchUp = "all"
)

// Catch-up bounds.
const (
	// DefaultCatchUpLimit is Job.CatchUpLimit's default.
	DefaultCatchUpLimit = 10
	// MaxCatchUpLimit bounds Job.CatchUpLimit.
	MaxCatchUpLimit = 1000
	// maxMissedWalk bounds the ticks counted one by one; beyond it, the
	// count is estimated from the schedule's interval (a job every second
	// down for a year).
	maxMissedWalk = 1_000_000
)

// CheckCatchUp returns an error when p is no valid CatchUp; "" is valid.
func CheckCatchUp(p CatchUp) error {
	switch p {
	case "", CatchUpSkip, CatchUpOnce, CatchUpAll:
		return nil
	}
	return fmt.Errorf("must be %s, %s or %s, got %q", CatchUpSkip, CatchUpOnce, CatchUpAll, string(p))
}

// CheckCatchUpLimit returns an error when n is no valid Job.CatchUpLimit.
func CheckCatchUpLimit(n int) error {
	if n < 1 || n > MaxCatchUpLimit {
		return fmt.Errorf("must be between 1 and %d, got %d", MaxCatchUpLimit, n)
	}
	return nil
}

// missedTicks returns the ticks of s after last and not after now: at most
// keep of them, the newest, oldest first, and how many there are in all.
func missedTicks(s cron.Schedule, last, now time.Time, keep int) (ticks []time.Time, n int) {
	keep = max(1, keep)
	prev := last
	for t := s.Next(last); !t.IsZero() && !t.After(now); t = s.Next(t) {
		n++
		if len(ticks) == keep {
			ticks = append(ticks[:0], ticks[1:]...)
		}
		ticks = append(ticks, t)
		if n == maxMissedWalk {
			// Skip to keep intervals before now, counting the skipped
			// ticks by the interval the schedule has here.
			if gap := t.Sub(prev); gap > 0 {
				if from := now.Add(-time.Duration(keep+1) * gap); from.After(t) {
					n += int(from.Sub(t) / gap)
					t = from
				}
			}
		}
		prev = t
	}
	return ticks, n
}

// pick applies the policy to the missed ticks (the newest of them, oldest
// first, of n in all): it returns those to run and how many are skipped.
func pick(j Job, ticks []time.Time, n int) (run []time.Time, skipped int) {
	switch j.CatchUp {
	case CatchUpOnce:
		run = ticks[len(ticks)-1:]
	case CatchUpAll:
		run = ticks[len(ticks)-min(len(ticks), catchUpLimit(j)):]
	}
	return run, n - len(run)
}

func catchUpLimit(j Job) int {
	if j.CatchUpLimit > 0 {
		return j.CatchUpLimit
	}
	return DefaultCatchUpLimit
}

// keep is how many of the newest missed ticks the job's policy can run.
func keep(j Job) int {
	if j.CatchUp == CatchUpAll {
		return catchUpLimit(j)
	}
	return 1
}

// missedAtStart returns, for each job that has missed ticks, the ticks to
// run now, counting those skipped. A job whose last tick cannot be read is
// logged and caught up on nothing: Start does not fail for it.
func (s *Scheduler) missedAtStart(now time.Time) map[*entry][]time.Time {
	ctx, cancel := context.WithTimeout(context.Background(), historyWriteTimeout)
	defer cancel()
	sdb, err := s.cfg.DB.Init(ctx)
	if err != nil {
		s.logger.Error("Cannot read the last ticks of the jobs: missed ticks are neither run nor counted", "err", err)
		return nil
	}
	out := make(map[*entry][]time.Time)
	for _, e := range s.entries {
		last, ok, err := jobhistory.LastScheduled(ctx, sdb, e.job.Name)
		if err != nil {
			s.logger.Error("Cannot read the job's last tick: missed ticks are neither run nor counted", "job", e.job.Name, "err", err)
			continue
		}
		if !ok {
			continue
		}
		ticks, n := missedTicks(e.job.Schedule, last.In(s.cfg.Location), now, keep(e.job))
		if n == 0 {
			continue
		}
		run, skipped := pick(e.job, ticks, n)
		if _, paused := s.pauses.get(e.job.Name); paused {
			run, skipped = nil, n // a paused job catches up on nothing
		}
		s.metrics.ticksSkipped.WithLabelValues(e.job.Name).Add(float64(skipped))
		s.logger.Info("Missed ticks", "job", e.job.Name, "last", last, "missed", n, "run", len(run), "skipped", skipped,
			"catch_up", catchUpPolicy(e.job))
		if len(run) > 0 {
			out[e] = run
		}
	}
	return out
}

func catchUpPolicy(j Job) CatchUp {
	if j.CatchUp == "" {
		return CatchUpSkip
	}
	return j.CatchUp
}

// catchUp runs the missed ticks of a job one after the other; the first is
// registered as a, in flight since Start. It stops at Stop.
func (s *Scheduler) catchUp(e *entry, ticks []time.Time, r *Run, a *active) {
	held := holdSlot(e)
	defer releaseSlot(e, held)
	for i := range ticks {
		if i > 0 {
			s.mu.Lock()
			if s.stopped {
				s.mu.Unlock()
				s.metrics.ticksSkipped.WithLabelValues(e.job.Name).Add(float64(len(ticks) - i))
				return
			}
			r = &Run{Job: e.job.Name, ScheduledAt: ticks[i], CatchUp: true}
			a = s.beginLocked(r)
			s.mu.Unlock()
		}
		r.slotHeld = held
		s.exec(e, r, a) // counted by finishEntry (countCaughtUp)
	}
}

// holdSlot takes the job's running slot for a whole catch-up sequence, so
// that its ticks run oldest first, one after the other, with no regular
// tick between them: a tick that fires meanwhile overlaps a run and is
// skipped, as it would be during any run. It reports whether it took the
// slot; a run in progress keeps it, and the sequence then goes tick by tick.
func holdSlot(e *entry) bool { return e.running.CompareAndSwap(false, true) }

func releaseSlot(e *entry, held bool) {
	if held {
		e.release()
	}
}

// countCaughtUp counts a caught-up tick by what its run did: one that was
// skipped (another run of the job held it) did not run and counts as a
// skipped tick, so that worker_job_ticks_caught_up_total counts the runs
// that job_runs has. finishEntry calls it for a tick's last attempt, before
// OnFinish and before the run leaves flight, so that Stop and OnFinish see
// it counted.
func (s *Scheduler) countCaughtUp(e *entry, r *Run) {
	if r.Result == Skipped {
		s.metrics.ticksSkipped.WithLabelValues(e.job.Name).Inc()
		return
	}
	s.metrics.ticksCaughtUp.WithLabelValues(e.job.Name).Inc()
}

// runTick runs the tick cron fired for, scheduled, at now. When cron passed
// over ticks after it (the process was paused), the job's policy picks what
// runs: skip runs scheduled, as cron always did, once the newest tick, all
// the newest CatchUpLimit ticks, scheduled included; the others are counted
// as skipped. A tick on time waits the job's jitter first.
func (s *Scheduler) runTick(e *entry, scheduled, now time.Time) {
	ticks, n := missedTicks(e.job.Schedule, scheduled, now.In(s.cfg.Location), keep(e.job))
	if n == 0 || catchUpPolicy(e.job) == CatchUpSkip {
		s.metrics.ticksSkipped.WithLabelValues(e.job.Name).Add(float64(n))
		r := &Run{Job: e.job.Name, ScheduledAt: scheduled}
		if n == 0 && !s.waitJitter(e, r) {
			return
		}
		_, _ = s.run(e, r)
		return
	}
	run, skipped := pick(e.job, append([]time.Time{scheduled}, ticks...), n+1)
	s.metrics.ticksSkipped.WithLabelValues(e.job.Name).Add(float64(skipped))
	s.logger.Info("Missed ticks after a pause", "job", e.job.Name, "missed", n, "run", len(run), "skipped", skipped,
		"catch_up", catchUpPolicy(e.job))
	held := holdSlot(e)
	defer releaseSlot(e, held)
	for i, t := range run {
		if _, err := s.run(e, &Run{Job: e.job.Name, ScheduledAt: t, CatchUp: true, slotHeld: held}); err != nil {
			s.metrics.ticksSkipped.WithLabelValues(e.job.Name).Add(float64(len(run) - i))
			return
		}
	}
}
