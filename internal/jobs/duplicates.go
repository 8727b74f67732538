package jobs

import (
	"context"
	"time"

	"github.com/sqlworker/worker/internal/jobhistory"
)

// DefaultDuplicateCheck is Config.DuplicateCheck's default: how often the
// scheduler counts the ticks that ran more than once.
const DefaultDuplicateCheck = time.Minute

// checkDuplicates counts, at Start and then every interval until ctx is
// done, the ticks of each job with more than one success row in job_runs,
// into worker_job_duplicate_ticks: the end-to-end proof that each tick ran
// once, beside the claims' own accounting. One GROUP BY over job_runs,
// which history_prune keeps to its retention.
func (s *Scheduler) checkDuplicates(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	seen := map[string]int{}
	for {
		s.countDuplicates(ctx, seen)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// countDuplicates runs one check; seen holds the counts of the check
// before, so that a new duplicate is logged once.
func (s *Scheduler) countDuplicates(ctx context.Context, seen map[string]int) {
	qctx, cancel := context.WithTimeout(ctx, historyWriteTimeout)
	defer cancel()
	d, err := s.cfg.DB.Init(qctx)
	var counts map[string]int
	if err == nil {
		counts, err = jobhistory.DuplicateTicks(qctx, d)
	}
	if err != nil {
		if ctx.Err() == nil {
			s.logger.Warn("Cannot count the ticks that ran more than once", "err", err)
		}
		return
	}
	skip := map[string]bool{}
	for _, name := range s.everyReplica() {
		skip[name] = true
	}
	// Every scheduled job, at 0 when it has no duplicate, and any other job
	// job_runs has one of (a job a reload removed).
	names := s.JobNames()
	for name := range counts {
		names = append(names, name)
	}
	for _, name := range names {
		if skip[name] {
			s.metrics.duplicateTicks.DeleteLabelValues(name)
			continue
		}
		n := counts[name]
		s.metrics.duplicateTicks.WithLabelValues(name).Set(float64(n))
		if n > seen[name] {
			s.logger.Error("Ticks ran more than once: job_runs has two or more success rows for one scheduled_at", "job", name, "ticks", n)
		}
		seen[name] = n
	}
}

// everyReplica returns the jobs whose every tick runs on every replica
// (Job.PerReplica, the heartbeat) when replicas coordinate: one success row
// per replica is what they should have, not a tick run twice.
func (s *Scheduler) everyReplica() []string {
	if s.cfg.Coordinator == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, e := range s.entries {
		if e.job.PerReplica {
			out = append(out, e.job.Name)
		}
	}
	return out
}
