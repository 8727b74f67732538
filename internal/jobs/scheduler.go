package jobs

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/robfig/cron/v3"

	"github.com/sqlworker/worker/internal/metricopt"
)

// Defaults for Config.
const (
	DefaultShutdownGrace = 30 * time.Second
	DefaultForceTimeout  = 10 * time.Second
	DefaultNamespace     = metricopt.DefaultNamespace
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
	// Coordinator, when set, claims each scheduled tick among replicas
	// sharing the database (PostgreSQL); nil runs every tick here.
	Coordinator Coordinator
	// DuplicateCheck is how often the ticks that ran more than once are
	// counted (worker_job_duplicate_ticks), from Start to Stop; 0 means
	// DefaultDuplicateCheck, a negative value never.
	DuplicateCheck time.Duration
	// PauseRefresh is how often job_pauses is read again, from Start to
	// Stop, for the pauses of other replicas; 0 means DefaultPauseRefresh
	// with a Coordinator and never without one (a single node writes
	// every pause itself), a negative value never.
	PauseRefresh time.Duration
}

// Scheduler runs jobs on their schedules. Stop is safe to call on a Scheduler
// that never started, and more than once.
type Scheduler struct {
	cfg     Config
	logger  *slog.Logger
	cron    *cron.Cron
	metrics *metrics
	entries []*entry          // guarded by mu: Replace swaps them (see lookup)
	byName  map[string]*entry // guarded by mu
	states  map[string]*state // by job name, kept across Replace; guarded by mu
	handle  handler
	history *history
	pauses  pauses // job_pauses, as last read or written (pause.go)

	wg        sync.WaitGroup // the history retry loop
	stopRetry context.CancelFunc
	stopScan  context.CancelFunc // the Coordinator's takeover scan; nil without one
	startedAt atomic.Int64       // Unix nanoseconds of Start; 0 before

	runCtx     context.Context // parent of every run; cancelled after the grace period
	cancelRuns context.CancelFunc

	mu       sync.Mutex
	started  bool
	stopped  bool
	inflight map[*active]struct{}
	changed  chan struct{} // a run ended
	quit     chan struct{} // closed when Stop begins
}

// entry is a job and its scheduling state. Replace gives a changed job a
// new entry with the old one's state, so the runs of both never overlap.
type entry struct {
	job Job
	m   *jobMetrics // the job's series, resolved once
	*state
	id   cron.EntryID
	mu   sync.Mutex
	next time.Time // next scheduled time, as cron will compute it
}

// state is what a job's entries share across Replace.
type state struct {
	running     atomic.Bool
	lastSuccess atomic.Int64 // Unix nanoseconds of the newest successful run's end; 0 before
	removed     atomic.Bool  // Replace removed the job: its series go once its runs end
	slot                     // waits for running, and the cancel of the run holding it
	backfill    sync.Mutex   // held by a Backfill that runs: this worker's backfills of the job go one at a time
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
		states:   make(map[string]*state),
		inflight: make(map[*active]struct{}),
		changed:  make(chan struct{}, 1),
		quit:     make(chan struct{}),
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
		if err := checkJob(j); err != nil {
			return nil, fmt.Errorf("jobs: job %q: %w", j.Name, err)
		}
		e := s.schedule(j)
		s.entries = append(s.entries, e)
		s.byName[j.Name] = e
		if j.Jitter > 0 {
			s.metrics.jitter.WithLabelValues(j.Name)
		}
	}
	if cfg.Registerer != nil {
		for _, c := range s.metrics.collectors() {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("jobs: cannot register metrics: %w", err)
			}
		}
	}
	s.handle = chain(s.runJob, s.record, s.skipIfPaused, s.overlap, s.coordinate, s.track, recoverPanic, s.withTimeout)
	return s, nil
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
// newest success or, before the first, from Start. It is nil before Start,
// for an unknown job and for a paused one (not running on purpose). A run
// that is skipped, hangs or keeps failing thus shows up even though no run
// reports it.
func (s *Scheduler) Overdue(name string, intervals int) error {
	e, ok := s.lookup(name)
	start := s.startedAt.Load()
	if _, paused := s.pauses.get(name); !ok || paused || start == 0 || intervals <= 0 {
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
// returns its record: that of its last attempt when it was retried. While
// the job runs, its Overlap policy decides whether it is skipped, waits,
// or replaces the running run.
func (s *Scheduler) RunOnce(name string) (*Run, error) {
	e, ok := s.lookup(name)
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownJob, name)
	}
	return s.run(e, &Run{Job: name, ScheduledAt: time.Now(), manual: true, runNow: true})
}

// JobNames returns the names of the scheduled jobs.
func (s *Scheduler) JobNames() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, len(s.entries))
	for i, e := range s.entries {
		out[i] = e.job.Name
	}
	return out
}

// claimedJobNames returns the names of the scheduled jobs whose ticks a
// Coordinator claims: all but the PerReplica ones.
func (s *Scheduler) claimedJobNames() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, e := range s.entries {
		if !e.job.PerReplica {
			out = append(out, e.job.Name)
		}
	}
	return out
}

// Next returns the next scheduled time of a job; zero before Start.
func (s *Scheduler) Next(name string) time.Time {
	e, ok := s.lookup(name)
	if !ok {
		return time.Time{}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.next
}

func unixSeconds(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return float64(t.UnixNano()) / 1e9
}
