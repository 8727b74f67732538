package jobs

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sqlworker/worker/internal/jobhistory"
)

// A paused job's ticks are not run: each is recorded skipped (a job_runs
// row whose error says paused, once across the replicas on PostgreSQL) and
// counted in worker_job_ticks_skipped_total, until it is resumed. Pauses
// are rows of job_pauses, so that a restart and every replica honour them.
// The Scheduler keeps them in memory, so that a tick asks no query of the
// database: it loads them at Start and writes through on Pause and Resume;
// on PostgreSQL, where other replicas pause and resume too, it reads the
// table again every Config.PauseRefresh (one query a period, however many
// jobs and ticks).

// ErrPaused is the error of a run skipped because its job is paused; its
// result is Skipped.
var ErrPaused = errors.New("job is paused")

// DefaultPauseRefresh is how often a Scheduler with a Coordinator re-reads
// job_pauses when Config.PauseRefresh is 0: how long a pause made on one
// replica may take to reach the others.
const DefaultPauseRefresh = time.Second

// MaxPauseReason bounds a pause's reason, in bytes.
const MaxPauseReason = 1024

// Pause is a paused job's pause.
type Pause struct {
	Reason string
	At     time.Time
	By     string // the replica that paused it; "" on SQLite
}

// pauses is the Scheduler's copy of job_pauses. gen counts the pauses and
// resumes made here, so that a read of the table that began before one of
// them does not undo it (see loadPauses).
type pauses struct {
	mu  sync.Mutex
	m   map[string]Pause
	gen uint64
}

func (p *pauses) get(job string) (Pause, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	v, ok := p.m[job]
	return v, ok
}

func (p *pauses) set(job string, v Pause, paused bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m == nil {
		p.m = make(map[string]Pause)
	}
	p.gen++
	if paused {
		p.m[job] = v
	} else {
		delete(p.m, job)
	}
}

func newPausedGauge(namespace string) *prometheus.GaugeVec {
	return prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: namespace, Subsystem: "job", Name: "paused",
		Help: "1 while the job is paused (POST /api/v1/jobs/{name}/pause), 0 otherwise.",
	}, []string{"job_name"})
}

// Paused returns the job's pause, and whether it is paused, as this
// Scheduler last read or wrote it.
func (s *Scheduler) Paused(name string) (Pause, bool) { return s.pauses.get(name) }

// Running reports whether a run of the job is in progress here.
func (s *Scheduler) Running(name string) bool {
	e, ok := s.lookup(name)
	return ok && e.running.Load()
}

// Pause pauses a scheduled job, recording the pause in job_pauses with
// reason (at most MaxPauseReason bytes) and by, the replica's id. Pausing
// a paused job replaces its reason. It returns ErrUnknownJob for a job
// that is not scheduled. A run in progress is left to finish.
func (s *Scheduler) Pause(ctx context.Context, name, reason, by string) (Pause, error) {
	if _, ok := s.lookup(name); !ok {
		return Pause{}, fmt.Errorf("%w: %q", ErrUnknownJob, name)
	}
	if len(reason) > MaxPauseReason {
		return Pause{}, fmt.Errorf("reason: %d bytes, more than %d", len(reason), MaxPauseReason)
	}
	d, err := s.cfg.DB.Init(ctx)
	if err != nil {
		return Pause{}, err
	}
	p := Pause{Reason: reason, At: time.Now().UTC().Truncate(time.Millisecond), By: by}
	if err := jobhistory.SetPause(ctx, d, jobhistory.PauseRow{Job: name, Reason: reason, PausedAt: p.At, PausedBy: by}); err != nil {
		return Pause{}, err
	}
	s.pauses.set(name, p, true)
	s.showPaused(name)
	s.logger.Info("Job paused", "job", name, "reason", reason)
	return p, nil
}

// Resume resumes a job: its next tick runs. It reports whether the job was
// paused, and returns ErrUnknownJob for a job that is not scheduled.
func (s *Scheduler) Resume(ctx context.Context, name string) (bool, error) {
	if _, ok := s.lookup(name); !ok {
		return false, fmt.Errorf("%w: %q", ErrUnknownJob, name)
	}
	d, err := s.cfg.DB.Init(ctx)
	if err != nil {
		return false, err
	}
	was, err := jobhistory.DeletePause(ctx, d, name)
	if err != nil {
		return false, err
	}
	s.pauses.set(name, Pause{}, false)
	s.showPaused(name)
	if was {
		s.logger.Info("Job resumed", "job", name)
	}
	return was, nil
}

// startPauses reads job_pauses, and starts re-reading it every
// Config.PauseRefresh until ctx is done. Called by Start, with mu held.
func (s *Scheduler) startPauses(ctx context.Context) {
	lctx, cancel := context.WithTimeout(ctx, historyWriteTimeout)
	if err := s.loadPauses(lctx); err != nil {
		s.logger.Error("Cannot read paused jobs: no job is paused until they are read", "err", err)
	}
	cancel()
	s.showPausedEntries(s.entries)
	every := s.cfg.PauseRefresh
	if every == 0 && s.cfg.Coordinator != nil {
		every = DefaultPauseRefresh
	}
	if every > 0 {
		s.wg.Go(func() { s.refreshPauses(ctx, every) })
	}
}

// loadPauses replaces the copy of job_pauses with the table's rows, unless
// a pause or resume was made here while it read them: the next read has it.
func (s *Scheduler) loadPauses(ctx context.Context) error {
	s.pauses.mu.Lock()
	gen := s.pauses.gen
	s.pauses.mu.Unlock()
	d, err := s.cfg.DB.Init(ctx)
	if err != nil {
		return err
	}
	rows, err := jobhistory.Pauses(ctx, d)
	if err != nil {
		return err
	}
	m := make(map[string]Pause, len(rows))
	for job, r := range rows {
		m[job] = Pause{Reason: r.Reason, At: r.PausedAt, By: r.PausedBy}
	}
	s.pauses.mu.Lock()
	if s.pauses.gen == gen {
		s.pauses.m = m
	}
	s.pauses.mu.Unlock()
	return nil
}

// showPausedEntries sets the worker_job_paused series of entries.
func (s *Scheduler) showPausedEntries(entries []*entry) {
	for _, e := range entries {
		v := 0.0
		if _, paused := s.pauses.get(e.job.Name); paused {
			v = 1
		}
		e.m.paused.Set(v)
	}
}

// refreshPauses re-reads job_pauses every period until ctx is done: the
// pauses and resumes of the other replicas.
func (s *Scheduler) refreshPauses(ctx context.Context, period time.Duration) {
	t := time.NewTicker(period)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(ctx, historyWriteTimeout)
		err := s.loadPauses(rctx)
		cancel()
		if err == nil {
			s.mu.Lock()
			entries := s.entries
			s.mu.Unlock()
			s.showPausedEntries(entries)
		}
		switch {
		case err != nil && !failing && ctx.Err() == nil:
			s.logger.Warn("Cannot read paused jobs; keeping the last read", "err", err)
		case err == nil && failing:
			s.logger.Info("Paused jobs read again")
		}
		failing = err != nil
	}
}

// showPaused sets the job's worker_job_paused series, if it is scheduled.
func (s *Scheduler) showPaused(name string) {
	if e, ok := s.lookup(name); ok {
		s.showPausedEntries([]*entry{e})
	}
}

// skipIfPaused records the run of a paused job skipped instead of running
// it. A scheduled tick is counted in worker_job_ticks_skipped_total (a
// caught-up one by countCaughtUp) and, with a Skipper, recorded once across
// the replicas. A run taken over from a dead replica goes on: its claim
// must end.
func (s *Scheduler) skipIfPaused(next handler) handler {
	return func(ctx context.Context, e *entry, r *Run) error {
		p, paused := s.pauses.get(e.job.Name)
		if !paused || r.takenOver != nil {
			return next(ctx, e, r)
		}
		err := pausedError(p)
		tick := !r.manual && r.Attempt <= 1
		if sk, ok := s.cfg.Coordinator.(Skipper); ok && tick && !e.job.PerReplica {
			serr := sk.Skip(ctx, Tick{Job: e.job.Name, ScheduledAt: r.ScheduledAt, Schedule: e.job.Schedule, Attempt: 1, Paused: true})
			if errors.Is(serr, ErrNotClaimed) {
				return serr // another replica has the tick, and records it
			}
		}
		if tick && !r.CatchUp {
			s.metrics.ticksSkipped.WithLabelValues(e.job.Name).Inc()
		}
		return err
	}
}

func pausedError(p Pause) error {
	if p.Reason == "" {
		return ErrPaused
	}
	return fmt.Errorf("%w: %s", ErrPaused, p.Reason)
}
