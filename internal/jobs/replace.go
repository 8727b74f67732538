package jobs

import (
	"fmt"
	"reflect"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/robfig/cron/v3"

	"github.com/sqlworker/worker/internal/clockskew"
)

// Changes are the names of the jobs a Replace added, changed and removed.
type Changes struct {
	Added, Changed, Removed []string
}

// Replace swaps the scheduled jobs for list, as a reload of the config
// does, without stopping the scheduler:
//
//   - a job whose name and settings (Job's fields but Func and Schedule,
//     Source standing for Func, Spec for Schedule) are the same keeps its
//     entry and its next run;
//   - a changed job is scheduled anew; a run of its old settings that is
//     going finishes under them, and a tick of the new ones that comes
//     while it goes is skipped, as any run that would overlap its job's;
//   - a removed job is unscheduled; its series of the worker_job_* metrics
//     are deleted once its last run finished;
//   - an added job is scheduled, and, with RunAtStart, run at once when the
//     scheduler has started; catch-up of missed ticks is Start's only.
//
// It returns an error, and changes nothing, for a job without a name,
// schedule or func, with a setting out of bounds (as New), or a name given
// twice; ErrStopped after Stop. Calls are serialised.
func (s *Scheduler) Replace(list []Job) (Changes, error) {
	seen := make(map[string]bool, len(list))
	for _, j := range list {
		if j.Name == "" || j.Schedule == nil || j.Func == nil {
			return Changes{}, fmt.Errorf("jobs: job %q needs a name, a schedule and a func", j.Name)
		}
		if seen[j.Name] {
			return Changes{}, fmt.Errorf("jobs: duplicate job name %q", j.Name)
		}
		if err := checkJob(j); err != nil {
			return Changes{}, fmt.Errorf("jobs: job %q: %w", j.Name, err)
		}
		seen[j.Name] = true
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return Changes{}, ErrStopped
	}
	var ch Changes
	now := time.Now().In(s.cfg.Location)
	entries := make([]*entry, 0, len(list))
	byName := make(map[string]*entry, len(list))
	for _, j := range list {
		old, had := s.byName[j.Name]
		if had && sameJob(old.job, j) {
			entries = append(entries, old)
			byName[j.Name] = old
			continue
		}
		if had {
			s.cron.Remove(old.id)
			ch.Changed = append(ch.Changed, j.Name)
		} else {
			ch.Added = append(ch.Added, j.Name)
		}
		e := s.schedule(j)
		e.removed.Store(false) // removed by an earlier Replace, back now
		if j.Jitter > 0 {
			s.metrics.jitter.WithLabelValues(j.Name)
		}
		entries = append(entries, e)
		byName[j.Name] = e
		if !s.started {
			continue // Start computes next
		}
		e.mu.Lock()
		e.next = j.Schedule.Next(now)
		e.m.setNext(j, e.next)
		e.mu.Unlock()
		if !had && j.RunAtStart {
			r := &Run{Job: j.Name, ScheduledAt: now}
			a := s.beginLocked(r)
			go s.exec(e, r, a)
		}
	}
	for _, old := range s.entries {
		if _, ok := byName[old.job.Name]; ok {
			continue
		}
		s.cron.Remove(old.id)
		ch.Removed = append(ch.Removed, old.job.Name)
		old.removed.Store(true)
		if !old.running.Load() {
			s.metrics.forget(old.job.Name)
		}
	}
	s.entries, s.byName = entries, byName
	return ch, nil
}

// schedule returns a new entry for j, with the state of the job's earlier
// entries, and schedules it with cron; called by New, and by Replace with
// mu held.
func (s *Scheduler) schedule(j Job) *entry {
	st, ok := s.states[j.Name]
	if !ok {
		st = new(state)
		s.states[j.Name] = st
	}
	// Its series: the old entry's of a changed job, new ones for a job
	// added (again, after forget deleted them).
	e := &entry{job: j, state: st, m: s.metrics.init(j.Name)}
	if _, paused := s.pauses.get(j.Name); paused {
		e.m.paused.Set(1)
	}
	sched := j.Schedule
	if clockskew.Enabled {
		// cron fires by the machine's clock: at the real time at which
		// this process's clock shows the tick.
		sched = skewed{sched, clockskew.Offset()}
	}
	e.id = s.cron.Schedule(sched, cron.FuncJob(func() { s.runScheduled(e) }))
	return e
}

// lookup returns the scheduled entry of a job.
func (s *Scheduler) lookup(name string) (*entry, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.byName[name]
	return e, ok
}

// forgetRemoved deletes the series of a removed job once a run of it has
// been recorded: a run still going when Replace removed the job ends
// after Replace, which could not delete them then. Replace sets removed
// before it reads running, and a run clears running before it is recorded,
// so one of the two deletes them after the last write.
func (s *Scheduler) forgetRemoved(e *entry) {
	if e.removed.Load() && !e.running.Load() {
		s.metrics.forget(e.job.Name)
	}
}

// sameJob reports whether a and b have the same settings: Func cannot be
// compared (Source stands for it) and Schedule is Spec parsed.
func sameJob(a, b Job) bool {
	a.Func, b.Func = nil, nil
	a.Schedule, b.Schedule = nil, nil
	return reflect.DeepEqual(a, b)
}

// forget deletes a job's series of every worker_job_* vector.
func (m *metrics) forget(job string) {
	l := prometheus.Labels{"job_name": job}
	m.runs.DeletePartialMatch(l)
	m.duration.DeletePartialMatch(l)
	m.startDelay.DeletePartialMatch(l)
	m.running.DeletePartialMatch(l)
	m.lastSuccess.DeletePartialMatch(l)
	m.nextRun.DeletePartialMatch(l)
	m.interval.DeletePartialMatch(l)
	m.ticksSkipped.DeletePartialMatch(l)
	m.ticksCaughtUp.DeletePartialMatch(l)
	m.retries.DeletePartialMatch(l)
	m.retriesGivenUp.DeletePartialMatch(l)
	m.jitter.DeletePartialMatch(l)
	m.duplicateTicks.DeletePartialMatch(l)
	m.paused.DeletePartialMatch(l)
}

// skewed is a schedule as fired by a clock off the machine's by d (the
// clockskew build tag).
type skewed struct {
	cron.Schedule
	d time.Duration
}

func (k skewed) Next(t time.Time) time.Time { return k.Schedule.Next(t.Add(k.d)).Add(-k.d) }
