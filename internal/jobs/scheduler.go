package jobs

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/robfig/cron/v3"

	"github.com/sqlworker/worker/internal/leak"
)

// Defaults for Config.
const (
	DefaultShutdownGrace = 30 * time.Second
	DefaultForceTimeout  = 10 * time.Second
	DefaultNamespace     = "worker"
	historyWriteTimeout  = 5 * time.Second
)

// ErrStopped is returned when a run is asked of a stopped Scheduler.
var ErrStopped = errors.New("scheduler is stopped")

// Initer is the idempotent database init every run calls first.
type Initer interface {
	Init(ctx context.Context) (*sql.DB, error)
}

// Config holds the settings of a Scheduler.
type Config struct {
	DB            Initer
	Location      *time.Location // time zone of specs without CRON_TZ=
	ShutdownGrace time.Duration  // how long Stop lets runs finish before cancelling them
	ForceTimeout  time.Duration  // how long Stop waits after cancelling
	Namespace     string         // metric namespace
	Registerer    prometheus.Registerer
	Logger        *slog.Logger
	// HistoryBuffer bounds the finished runs held in memory while their
	// job_runs rows cannot be written; 0 means DefaultHistoryBuffer.
	HistoryBuffer int
	// OnFinish, when set, is called after every finished run has been
	// counted, logged and handed to the history, with the history's state
	// then: nil, a *HistoryError while runs are held for retry, or
	// ErrHistoryFull when this run was dropped. The worker feeds its
	// readiness from it. It must not block.
	OnFinish func(r *Run, historyErr error)
}

// Scheduler runs jobs on their schedules. Stop is safe to call on a Scheduler
// that never started, and more than once.
type Scheduler struct {
	cfg     Config
	logger  *slog.Logger
	cron    *cron.Cron
	metrics *metrics
	entries []*entry
	byName  map[string]*entry
	handle  handler
	history *history

	wg        sync.WaitGroup // the history retry loop
	stopRetry context.CancelFunc
	startedAt atomic.Int64 // Unix nanoseconds of Start; 0 before

	runCtx     context.Context // parent of every run; cancelled after the grace period
	cancelRuns context.CancelFunc

	mu       sync.Mutex
	started  bool
	stopped  bool
	inflight map[*active]struct{}
	changed  chan struct{} // a run ended
}

// entry is a job and its scheduling state.
type entry struct {
	job     Job
	running atomic.Bool
	mu      sync.Mutex
	next    time.Time // next scheduled time, as cron will compute it

	lastSuccess atomic.Int64 // Unix nanoseconds of the newest successful run's end; 0 before
}

// active is a run in progress; recorded guards against recording it twice
// when Stop abandons it.
type active struct {
	run      *Run
	recorded atomic.Bool
}

// New validates the jobs and registers the job metrics.
func New(cfg Config, jobs []Job) (*Scheduler, error) {
	if cfg.DB == nil {
		return nil, errors.New("jobs: Config.DB is nil")
	}
	if cfg.Location == nil {
		cfg.Location = time.Local
	}
	if cfg.ShutdownGrace <= 0 {
		cfg.ShutdownGrace = DefaultShutdownGrace
	}
	if cfg.ForceTimeout <= 0 {
		cfg.ForceTimeout = DefaultForceTimeout
	}
	if cfg.Namespace == "" {
		cfg.Namespace = DefaultNamespace
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Scheduler{
		cfg:      cfg,
		logger:   logger,
		metrics:  newMetrics(cfg.Namespace),
		byName:   make(map[string]*entry),
		inflight: make(map[*active]struct{}),
		changed:  make(chan struct{}, 1),
		cron: cron.New(
			cron.WithLocation(cfg.Location),
			cron.WithLogger(cronLogger{logger}),
		),
	}
	s.runCtx, s.cancelRuns = context.WithCancel(context.Background())
	s.history = newHistory(cfg.DB, logger, cfg.HistoryBuffer, s.metrics)
	for _, j := range jobs {
		if j.Name == "" || j.Schedule == nil || j.Func == nil {
			return nil, fmt.Errorf("jobs: job %q needs a name, a schedule and a func", j.Name)
		}
		if _, ok := s.byName[j.Name]; ok {
			return nil, fmt.Errorf("jobs: duplicate job name %q", j.Name)
		}
		e := &entry{job: j}
		s.entries = append(s.entries, e)
		s.byName[j.Name] = e
		s.metrics.init(j.Name)
		s.cron.Schedule(j.Schedule, cron.FuncJob(func() { s.runScheduled(e) }))
	}
	if cfg.Registerer != nil {
		for _, c := range s.metrics.collectors() {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("jobs: cannot register metrics: %w", err)
			}
		}
	}
	s.handle = chain(s.runJob, s.record, s.skipIfRunning, s.track, recoverPanic, s.withTimeout)
	return s, nil
}

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
	now := time.Now().In(s.cfg.Location)
	s.startedAt.Store(now.UnixNano())
	retryCtx, stopRetry := context.WithCancel(context.Background())
	s.stopRetry = stopRetry
	s.wg.Go(func() { s.history.retry(retryCtx) })
	for _, e := range s.entries {
		e.mu.Lock()
		e.next = e.job.Schedule.Next(now)
		s.metrics.setNext(e.job, e.next)
		e.mu.Unlock()
	}
	s.cron.Start()
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
	started := s.started
	s.mu.Unlock()
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

// HistoryErr returns nil when every finished run is written to job_runs
// (or being written), and a *HistoryError while runs are held in memory
// because their rows could not be written. It takes one mutex and never
// waits for the database, so a readiness check can call it.
func (s *Scheduler) HistoryErr() error { return s.history.Err() }

// ErrNoSuccess is the error of Overdue.
var ErrNoSuccess = errors.New("no success")

// Overdue returns an error, wrapping ErrNoSuccess, when the job has not
// succeeded for more than intervals of its schedule's interval (the next two
// scheduled runs apart, as worker_job_interval_seconds), counted from its
// newest success or, before the first, from Start. It is nil before Start
// and for an unknown job. A run that is skipped, hangs or keeps failing
// thus shows up even though no run reports it.
func (s *Scheduler) Overdue(name string, intervals int) error {
	e, ok := s.byName[name]
	start := s.startedAt.Load()
	if !ok || start == 0 || intervals <= 0 {
		return nil
	}
	e.mu.Lock()
	next := e.next
	e.mu.Unlock()
	interval := e.job.Schedule.Next(next).Sub(next)
	if interval <= 0 {
		return nil
	}
	since := time.Unix(0, max(start, e.lastSuccess.Load()))
	age := time.Since(since)
	if age <= time.Duration(intervals)*interval {
		return nil
	}
	unit := time.Second
	if age < time.Minute {
		unit = 100 * time.Millisecond
	}
	if r := age % unit; r != 0 {
		age += unit - r // round up: "31s" or "3.1s" means more than 30 or 3
	}
	return fmt.Errorf("%w for %s (%d intervals of %s)", ErrNoSuccess, age, intervals, interval)
}

// RunOnce runs a job now, through the same chain as a scheduled run, and
// returns its record.
func (s *Scheduler) RunOnce(name string) (*Run, error) {
	e, ok := s.byName[name]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownJob, name)
	}
	r := &Run{Job: name, ScheduledAt: time.Now()}
	if err := s.run(e, r); err != nil {
		return nil, err
	}
	return r, nil
}

// JobNames returns the names of the scheduled jobs.
func (s *Scheduler) JobNames() []string {
	out := make([]string, len(s.entries))
	for i, e := range s.entries {
		out[i] = e.job.Name
	}
	return out
}

// Next returns the next scheduled time of a job; zero before Start.
func (s *Scheduler) Next(name string) time.Time {
	e, ok := s.byName[name]
	if !ok {
		return time.Time{}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.next
}

func (s *Scheduler) runScheduled(e *entry) {
	now := time.Now()
	e.mu.Lock()
	scheduled := e.next
	e.next = e.job.Schedule.Next(now.In(s.cfg.Location))
	s.metrics.setNext(e.job, e.next)
	e.mu.Unlock()
	_ = s.run(e, &Run{Job: e.job.Name, ScheduledAt: scheduled})
}

// run registers the run as in flight, unless the scheduler has stopped, and
// passes it down the chain.
func (s *Scheduler) run(e *entry, r *Run) error {
	a := &active{run: r}
	r.StartedAt = time.Now() // before registering, so abandon reads it safely
	s.mu.Lock()
	if s.stopped && s.runCtx.Err() != nil {
		s.mu.Unlock()
		return ErrStopped
	}
	s.inflight[a] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.inflight, a)
		s.mu.Unlock()
		select {
		case s.changed <- struct{}{}:
		default:
		}
	}()
	ctx := context.WithValue(s.runCtx, activeKey{}, a)
	_ = s.handle(ctx, e, r)
	return nil
}

type activeKey struct{}

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
	for a := range s.inflight {
		runs = append(runs, a)
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
			StartedAt:   a.run.StartedAt,
			EndedAt:     time.Now(),
			Result:      Cancelled,
			Err:         ErrAbandoned,
		}
		wg.Go(func() { s.finish(r) })
	}
	wg.Wait()
}

func unixSeconds(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return float64(t.UnixNano()) / 1e9
}

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
		r.EndedAt = time.Now()
		r.Err = err
		r.Result = s.classify(err)
		if a, ok := ctx.Value(activeKey{}).(*active); ok && !a.recorded.CompareAndSwap(false, true) {
			return err // Stop already recorded it as abandoned
		}
		s.finish(r)
		return err
	}
}

func (s *Scheduler) classify(err error) Result {
	var pe *PanicError
	switch {
	case err == nil:
		return Success
	case errors.Is(err, ErrSkipped):
		return Skipped
	case errors.As(err, &pe):
		return Panic
	case errors.Is(err, errTimeout):
		return Timeout
	case s.runCtx.Err() != nil:
		return Cancelled
	}
	return Failure
}

// finish records a finished run in metrics, the log and the history table.
func (s *Scheduler) finish(r *Run) {
	m := s.metrics
	m.runs.WithLabelValues(r.Job, string(r.Result)).Inc()
	if r.Result != Skipped {
		m.duration.WithLabelValues(r.Job).Observe(r.EndedAt.Sub(r.StartedAt).Seconds())
		if !r.ScheduledAt.IsZero() {
			m.startDelay.WithLabelValues(r.Job).Observe(max(0, r.StartedAt.Sub(r.ScheduledAt).Seconds()))
		}
	}
	if r.Result == Success {
		if e, ok := s.byName[r.Job]; ok && setMax(&e.lastSuccess, r.EndedAt.UnixNano()) {
			m.lastSuccess.WithLabelValues(r.Job).Set(unixSeconds(r.EndedAt))
		}
	}
	s.log(r)
	err := s.history.add(r)
	if err != nil {
		s.logger.Error("Cannot record job run", "job", r.Job, "result", r.Result, "err", err)
	}
	if s.cfg.OnFinish != nil {
		s.cfg.OnFinish(r, err)
	}
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
	attrs := []any{"job", r.Job, "result", r.Result, "duration", r.EndedAt.Sub(r.StartedAt), "rows", r.RowsAffected}
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

// TimeFormat is how times are stored in the worker's tables: UTC, fixed
// width, so that text order is time order.
const TimeFormat = "2006-01-02T15:04:05.000Z"

// FormatTime formats t in TimeFormat.
func FormatTime(t time.Time) string { return t.UTC().Format(TimeFormat) }

// skipIfRunning skips a run while the previous run of the job is going.
func (s *Scheduler) skipIfRunning(next handler) handler {
	return func(ctx context.Context, e *entry, r *Run) error {
		if !e.running.CompareAndSwap(false, true) {
			return ErrSkipped
		}
		defer e.running.Store(false)
		return next(ctx, e, r)
	}
}

// track exports the run as in progress.
func (s *Scheduler) track(next handler) handler {
	return func(ctx context.Context, e *entry, r *Run) error {
		g := s.metrics.running.WithLabelValues(e.job.Name)
		g.Set(1)
		defer g.Set(0)
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

// cronLogger sends cron's own messages to slog.
type cronLogger struct{ l *slog.Logger }

func (c cronLogger) Info(msg string, kv ...any) { c.l.Debug("cron: "+msg, kv...) }
func (c cronLogger) Error(err error, msg string, kv ...any) {
	c.l.Error("cron: "+msg, append(kv, "err", err)...)
}
