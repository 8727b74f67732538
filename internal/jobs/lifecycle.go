package jobs

import (
	"cmp"
	"context"
	"errors"
	"sync"
	"time"

	"github.com/sqlworker/worker/internal/faultinject/clockskew"
)

// Start starts scheduling. It returns ErrStopped after Stop.
func (s *Scheduler) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return ErrStopped
	}
	if s.started {
		return nil
	}
	s.started = true
	now := clockskew.Now().In(s.cfg.Location)
	s.startedAt.Store(now.UnixNano())
	retryCtx, stopRetry := context.WithCancel(context.Background())
	s.stopRetry = stopRetry
	s.wg.Go(func() { s.history.retry(retryCtx) })
	if every := s.cfg.DuplicateCheck; every >= 0 {
		s.wg.Go(func() { s.checkDuplicates(retryCtx, cmp.Or(every, DefaultDuplicateCheck)) })
	}
	s.startScan()
	s.startPauses(retryCtx)
	for _, e := range s.entries {
		e.mu.Lock()
		e.next = e.job.Schedule.Next(now)
		e.m.setNext(e.job, e.next)
		e.mu.Unlock()
	}
	missed := s.missedAtStart(now)
	s.cron.Start()
	for _, e := range s.entries {
		if ticks := missed[e]; len(ticks) > 0 {
			// In flight from here, as a RunAtStart run; the catch-up
			// runs stand in for it.
			r := &Run{Job: e.job.Name, ScheduledAt: ticks[0], CatchUp: true}
			a := s.beginLocked(r)
			go s.catchUp(e, ticks, r, a)
			continue
		}
		if e.job.RunAtStart {
			// In flight from here, under mu, so that a Stop right after
			// Start waits for it; run in the background, so that Start
			// does not.
			r := &Run{Job: e.job.Name, ScheduledAt: now, manual: true}
			a := s.beginLocked(r)
			go s.exec(e, r, a)
		}
	}
	s.logger.Info("Scheduler started", "jobs", len(s.entries))
	return nil
}

// Stop stops scheduling and waits for the runs in progress: for the grace
// period, then it cancels their contexts and waits up to the force timeout.
// Runs still going after that are recorded as cancelled and abandoned, and
// Stop returns ErrStopTimeout. A done ctx ends the grace period early.
// Last, it tries once more to write the runs held in memory (see
// DefaultHistoryBuffer); those it cannot write are counted as dropped and
// Stop returns ErrHistoryLost. Call it before the database closes.
func (s *Scheduler) Stop(ctx context.Context) error {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return nil
	}
	s.stopped = true
	close(s.quit) // ends jitter and retry waits
	started := s.started
	s.mu.Unlock()
	if s.stopScan != nil {
		s.stopScan()
	}
	err := s.stopRuns(ctx, started)
	if s.stopRetry != nil {
		s.stopRetry()
	}
	s.wg.Wait()
	if herr := s.history.drain(ctx); herr != nil {
		s.logger.Error("Job runs lost from history at shutdown", "err", herr)
		err = errors.Join(err, herr)
	}
	return err
}

func (s *Scheduler) stopRuns(ctx context.Context, started bool) error {

	cronDone := context.Background()
	if started {
		cronDone = s.cron.Stop()
	} else {
		var cancel context.CancelFunc
		cronDone, cancel = context.WithCancel(cronDone)
		cancel()
	}
	idle := s.waitIdle(cronDone)

	grace := time.NewTimer(s.cfg.ShutdownGrace)
	defer grace.Stop()
	select {
	case <-idle:
		s.cancelRuns()
		return nil
	case <-grace.C:
		s.logger.Warn("Shutdown grace period over, cancelling runs", "grace", s.cfg.ShutdownGrace, "running", s.numInflight())
	case <-ctx.Done():
		s.logger.Warn("Shutdown forced, cancelling runs", "running", s.numInflight())
	}
	s.cancelRuns()

	force := time.NewTimer(s.cfg.ForceTimeout)
	defer force.Stop()
	select {
	case <-idle:
		return nil
	case <-force.C:
	}
	s.abandon()
	return ErrStopTimeout
}

func (s *Scheduler) runScheduled(e *entry) {
	now := clockskew.Now()
	e.mu.Lock()
	scheduled := e.next
	e.next = e.job.Schedule.Next(now.In(s.cfg.Location))
	e.m.setNext(e.job, e.next)
	e.mu.Unlock()
	s.runTick(e, scheduled, now)
}

// run registers the run as in flight, unless the scheduler has stopped, and
// passes it down the chain; it returns the run's last attempt.
func (s *Scheduler) run(e *entry, r *Run) (*Run, error) {
	s.mu.Lock()
	if s.stopped && s.runCtx.Err() != nil {
		s.mu.Unlock()
		return nil, ErrStopped
	}
	a := s.beginLocked(r)
	s.mu.Unlock()
	return s.exec(e, r, a), nil
}

// beginLocked registers r as in flight; called with mu held.
func (s *Scheduler) beginLocked(r *Run) *active {
	a := &active{run: r}
	r.StartedAt = time.Now() // before registering, so abandon reads it safely
	r.Attempt = max(1, r.Attempt)
	s.inflight[a] = struct{}{}
	return a
}

// exec passes a run registered by beginLocked down the chain, and each of
// its retries after it (see planRetry), and unregisters each once done. It
// returns the last attempt.
func (s *Scheduler) exec(e *entry, r *Run, a *active) *Run {
	for {
		ctx := context.WithValue(s.runCtx, activeKey{}, a)
		_ = s.handle(ctx, e, r)
		var next *Run
		var na *active
		if r.retryIn > 0 {
			next, na = s.retryAfter(e, r) // a stays in flight while it waits
		}
		s.mu.Lock()
		delete(s.inflight, a)
		s.mu.Unlock()
		select {
		case s.changed <- struct{}{}:
		default:
		}
		if next == nil {
			return r
		}
		r, a = next, na
	}
}

type activeKey struct{}

// restart sets r's start to now: a run that waited for its turn (overlap
// buffer_one or replace) starts when it gets it, not when it was asked for.
func (s *Scheduler) restart(r *Run) {
	s.mu.Lock()
	r.StartedAt = time.Now()
	s.mu.Unlock()
}

func (s *Scheduler) numInflight() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.inflight)
}

// waitIdle returns a channel closed once cron's own goroutines are done and
// no run is in flight.
func (s *Scheduler) waitIdle(cronDone context.Context) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-cronDone.Done()
		for s.numInflight() > 0 {
			<-s.changed
		}
	}()
	return done
}

// abandon records every run still in flight as cancelled.
func (s *Scheduler) abandon() {
	s.mu.Lock()
	var runs []*active
	starts := make(map[*active]time.Time) // read under mu: a run that waited for its turn sets it again (see restart)
	for a := range s.inflight {
		runs = append(runs, a)
		starts[a] = a.run.StartedAt
	}
	s.mu.Unlock()
	// Recorded side by side: each history write may wait for a connection,
	// and a pool pinned by the stuck runs would make them wait in turn.
	var wg sync.WaitGroup
	for _, a := range runs {
		if !a.recorded.CompareAndSwap(false, true) {
			continue
		}
		// A fresh record: the run's goroutine may still be writing its own.
		r := &Run{
			Job:         a.run.Job,
			ScheduledAt: a.run.ScheduledAt,
			StartedAt:   starts[a],
			EndedAt:     time.Now(),
			Result:      Cancelled,
			Err:         ErrAbandoned,
			Attempt:     a.run.Attempt,
			Jitter:      a.run.Jitter,
			CatchUp:     a.run.CatchUp,
		}
		wg.Go(func() { s.finish(r) })
	}
	wg.Wait()
}
