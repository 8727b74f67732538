package worker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/version"

	"github.com/sqlworker/worker/fdstat"
	"github.com/sqlworker/worker/internal/claim"
	"github.com/sqlworker/worker/internal/config"
	"github.com/sqlworker/worker/internal/db"
	"github.com/sqlworker/worker/internal/dbmetrics"
	"github.com/sqlworker/worker/internal/jobs"
	"github.com/sqlworker/worker/internal/metricopt"
	"github.com/sqlworker/worker/internal/schedule"
	webpkg "github.com/sqlworker/worker/internal/web"
)

// DefaultNamespace ("worker") is the namespace of the worker's metrics:
// worker_job_*, worker_db_*, worker_open_fds.
const DefaultNamespace = metricopt.DefaultNamespace

// Errors of a Worker.
var (
	// ErrStarted is returned by Register once Open, Start or Run was called.
	ErrStarted = errors.New("worker already started")
	// ErrStopped is returned by Start after Stop or Close.
	ErrStopped = errors.New("worker is stopped")
	// ErrDuplicateJob is returned by Register for a name that is taken by a
	// built-in job, a SQL job of the config or another Go job.
	ErrDuplicateJob = errors.New("duplicate job name")
	// ErrStopTimeout is in Stop's error when runs were still going after
	// the shutdown grace and the force timeout; they are recorded as
	// cancelled and abandoned.
	ErrStopTimeout = jobs.ErrStopTimeout
	// ErrHistoryLost is in Stop's error when finished runs could not be
	// written to job_runs by shutdown.
	ErrHistoryLost = jobs.ErrHistoryLost
	// ErrNoGoJob is in the error of a config entry with no sql whose name
	// is no registered Go job.
	ErrNoGoJob = config.ErrNoGoJob
)

// Options are what New builds a Worker from. Every field may be left zero.
type Options struct {
	// Config is the configuration; nil means DefaultConfig(). New checks
	// it as ParseConfig checks a file (see ConfigError), and keeps a copy:
	// changing it later changes nothing; see Reload.
	Config *Config
	// Registerer receives the worker's metrics (worker_job_*, worker_db_*,
	// worker_open_fds, go_sql_*{db_name="main"}) when Start is called; nil
	// registers none. Use a registry of the worker's own, or one the
	// program does not register these names in.
	Registerer prometheus.Registerer
	// Logger receives the worker's logs; nil discards them.
	Logger *slog.Logger
	// Version is recorded by the heartbeat job in the heartbeat table;
	// "" means the build's version (github.com/prometheus/common/version).
	Version string
	// OnRun, when set, is given the record of every finished run, of every
	// job, skipped runs included, once it is in the metrics and handed to
	// job_runs: a test waits on it for a run instead of sleeping. It is
	// called from a goroutine of its own, one record at a time, in the
	// order the runs finished, so it cannot hold up a run or the
	// scheduler; up to RunHookBuffer records wait while it is busy, and
	// more are dropped (logged). Stop waits, until its ctx is done, for
	// the records of every run to have been given to it. A panic in it is
	// recovered and logged.
	OnRun func(RunRecord)
}

// Worker runs jobs on their schedules against one shared database handle.
// Register jobs before Start; Stop and Close may be called in any state, and
// more than once.
type Worker struct {
	cfg       *config.Config // validated, every default filled in
	reg       prometheus.Registerer
	logger    *slog.Logger
	handle    *db.Handle
	builtins  *jobs.Builtins
	readiness *webpkg.Readiness
	ready     chan struct{} // closed once Start succeeded
	last      lastRuns      // each job's run that finished last, for the admin API
	reloads   reloadMetrics
	fds       *fdstat.Counter // the FD counter of the metrics, once Open registered them
	reloadMu  sync.Mutex      // serialises Reload
	stopping  chan struct{}   // closed by Stop: a Reload waiting for its load gives up
	onRun     *runHook        // of Options.OnRun; nil without one

	mu     sync.Mutex
	goJobs []goJob
	phase  phase           // where the worker is in its life (lifecycle.go)
	list   []jobs.Job      // the enabled jobs, once open
	sched  *jobs.Scheduler // set once open

	// reopen is the retry of a PostgreSQL open that failed in Open: it
	// runs until the database opens or Stop cancels it.
	reopen     sync.WaitGroup
	stopReopen context.CancelFunc
	reopening  bool // the retry has not opened the database yet
}

// Backoff of the retries of a PostgreSQL database that did not open in
// Open: the first after ReopenMinBackoff, each later one after twice the
// wait before it, up to ReopenMaxBackoff.
const (
	ReopenMinBackoff = 250 * time.Millisecond
	ReopenMaxBackoff = 10 * time.Second
)

// New returns a Worker for opts. It opens nothing: the database opens in
// Open or Start.
func New(opts Options) (*Worker, error) {
	if opts.Config == nil {
		opts.Config = &Config{}
	}
	cfg, err := opts.Config.check()
	if err != nil {
		return nil, err
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	v := opts.Version
	if v == "" {
		v = version.Version
	}
	w := &Worker{
		cfg:       cfg,
		reg:       opts.Registerer,
		logger:    logger,
		readiness: webpkg.NewReadiness("starting"),
		ready:     make(chan struct{}),
		stopping:  make(chan struct{}),
		handle: db.New(db.Config{
			Path:         cfg.DBPath,
			MaxOpenConns: cfg.MaxOpenConns,
			BusyTimeout:  cfg.BusyTimeout,
			MaxPageCount: int64(cfg.MaxPageCount),
			Checkpoint:   cfg.Checkpoint,
			URL:          cfg.DBURL,
			PasswordFile: cfg.DBPasswordFile,
			ReplicaID:    cfg.DBReplicaID,
			Logger:       logger,
		}),
		builtins: jobs.NewBuiltins(DefaultNamespace, v, cfg.HistoryRetention),
		reloads:  newReloadMetrics(DefaultNamespace),
	}
	w.builtins.ReplicaID = w.handle.ReplicaID()
	w.builtins.Verify = w.handle.Verify
	w.builtins.HistoryMaxRowsPerJob = cfg.HistoryMaxRowsPerJob
	w.builtins.NoCheckpoint = cfg.Checkpoint == config.CheckpointExternal
	if w.handle.Postgres() {
		// The handle's migrations created job_claims on open, so a manual
		// history_prune may run before any claim.
		w.builtins.PruneClaims = claim.Prune
	}
	w.readiness.AddCheck("database", w.handle.Health)
	if opts.OnRun != nil {
		w.onRun = newRunHook(opts.OnRun, logger)
	}
	return w, nil
}

// Register adds a Go job: fn runs on the cron schedule spec (five fields,
// six with seconds, or a descriptor such as "@every 1m"; see the README's
// Configuration), bounded by DefaultJobTimeout unless an option says
// otherwise. A config entry under jobs with the same name and no sql can
// reschedule, re-time or disable it. Register returns an error naming the
// job when the name is invalid or taken (ErrDuplicateJob), the schedule is
// invalid, or Start was called (ErrStarted).
func (w *Worker) Register(name, spec string, fn Func, opts ...JobOption) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.phase > phaseNew {
		return fmt.Errorf("worker: job %q: %w", name, ErrStarted)
	}
	if err := config.CheckName(name); err != nil {
		return fmt.Errorf("worker: job name: %w", err)
	}
	if fn == nil {
		return fmt.Errorf("worker: job %q: nil func", name)
	}
	for _, j := range w.cfg.Jobs {
		if j.Name == name && !j.Go {
			return fmt.Errorf("worker: job %q: %w (also %s of the config)", name, ErrDuplicateJob, j.Field)
		}
	}
	for _, g := range w.goJobs {
		if g.cfg.Name == name {
			return fmt.Errorf("worker: job %q: %w (registered twice)", name, ErrDuplicateJob)
		}
	}
	if _, err := schedule.Parse(spec); err != nil {
		return fmt.Errorf("worker: job %q: invalid schedule %q: %w", name, spec, err)
	}
	g, err := goJobOf(name, spec, fn, opts)
	if err != nil {
		return err
	}
	w.goJobs = append(w.goJobs, g)
	return nil
}

// goJobOf applies opts to the settings of a Go job and checks them as New
// checks a config entry.
func goJobOf(name, spec string, fn Func, opts []JobOption) (goJob, error) {
	jc := JobConfig{Name: name, Spec: spec}
	for _, o := range opts {
		if err := o.ApplyJob(&jc); err != nil {
			return goJob{}, fmt.Errorf("worker: job %q: %w", name, err)
		}
	}
	if jc.Name != name || jc.Builtin || jc.SQL != "" || jc.Spec == "" {
		return goJob{}, fmt.Errorf("worker: job %q: an option changed its Name, Builtin, SQL or Spec, which are Register's", name)
	}
	ic, err := (&Config{Jobs: []JobConfig{jc}}).check()
	var ce *ConfigError
	if errors.As(err, &ce) {
		return goJob{}, fmt.Errorf("worker: job %q: %s: %s", name, strings.Replace(ce.Field, "Config.Jobs[0]", "JobConfig", 1), ce.Reason)
	}
	if err != nil {
		return goJob{}, fmt.Errorf("worker: job %q: %w", name, err)
	}
	return goJob{cfg: jc, schedule: ic.Jobs[len(ic.Jobs)-1].Schedule, fn: fn}, nil
}

// Open resolves the jobs, opens the database (creating and migrating it)
// and registers the metrics, without scheduling anything: a program that
// serves HTTP can open first, so that its first scrape sees every series,
// and Start once it listens. Start calls it when it was not called. It
// returns an error naming the field for a config entry with no sql whose
// name is no registered Go job (ErrNoGoJob), ErrStopped after Stop, and nil
// when already open. After a failed Open, call Close.
//
// On PostgreSQL (Config.DBURL), a database that does not open (the server
// down, or refusing the worker) is not Open's error: the worker stays up,
// not ready, with the cause on /readyz, and retries in the background, from
// ReopenMinBackoff doubling up to ReopenMaxBackoff, until it opens or Stop;
// every run's Init tries too. On SQLite, where the cause is a file or a
// directory that does not change by itself, Open returns the error.
func (w *Worker) Open(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.openLocked(ctx)
}

func (w *Worker) openLocked(ctx context.Context) error {
	switch {
	case w.stoppedLocked():
		return ErrStopped
	case w.phase >= phaseOpen:
		return nil
	}
	w.advance(phaseOpening)
	plan, err := w.planLocked()
	if err != nil {
		return err
	}
	if _, err := w.handle.Init(ctx); err != nil {
		if !w.handle.Postgres() {
			return err
		}
		// A server that is down or refuses us is the server's fault, not
		// the config's: stay up, not ready, and retry until it opens.
		w.logger.Error("Cannot open the database; retrying with backoff, not ready until it opens", "database", w.handle.Where(), "err", err)
		w.startReopen()
	}
	if w.reg != nil {
		var files []string // the SQLite files, whose descriptors are counted as sqlite
		if !w.handle.Postgres() {
			files = append(files, w.cfg.DBPath)
		}
		// Closed by Close: it keeps a descriptor of /proc/self/fd open.
		w.fds = fdstat.NewCounter(files...)
		cs := []prometheus.Collector{
			// Reads the handle open at scrape time: Verify can replace it.
			dbmetrics.NewDBStatsCollector(w.handle, "main"),
			dbmetrics.NewCollector(DefaultNamespace, w.handle),
			fdstat.NewCollector(w.fds, fdstat.WithNamespace(DefaultNamespace)),
			w.builtins,
			w.reloads.successful,
			w.reloads.timestamp,
		}
		if w.handle.Postgres() {
			cs = append(cs, dbmetrics.NewServerCollector(DefaultNamespace, w.handle))
		}
		for _, c := range cs {
			if err := w.reg.Register(c); err != nil {
				return fmt.Errorf("cannot register metrics: %w", err)
			}
		}
	}
	w.list = scheduled(plan)
	coord, err := w.coordinator()
	if err != nil {
		return err
	}
	faults := &runFaults{readiness: w.readiness, logger: w.logger}
	sched, err := jobs.New(jobs.Config{
		DB:            w.handle,
		Location:      w.cfg.Location,
		ShutdownGrace: w.cfg.ShutdownGrace,
		Registerer:    w.reg,
		Logger:        w.logger,
		OnFinish: func(r *jobs.Run, historyErr error) {
			faults.observe(r, historyErr)
			w.last.observe(r)
			if w.onRun != nil {
				w.onRun.add(newRunRecord(r))
			}
		},
		Coordinator:    coord,
		DuplicateCheck: w.cfg.DuplicateCheck,
	}, w.list)
	if err != nil {
		return err
	}
	w.addChecks(sched)
	w.sched = sched
	w.advance(phaseOpen)
	return nil
}

// coordinator returns, on PostgreSQL, the claims through which the replicas
// sharing the database run each tick once (internal/claim), for every job
// but those that run on every replica; nil on SQLite. Called with mu held.
func (w *Worker) coordinator() (jobs.Coordinator, error) {
	if !w.handle.Postgres() {
		return nil, nil
	}
	var names []string
	for _, j := range w.list {
		if !j.PerReplica {
			names = append(names, j.Name)
		}
	}
	c, err := claim.New(claim.Config{DB: w.handle, Owner: w.handle.ApplicationName(), Lease: w.cfg.Lease, Registerer: w.reg, Logger: w.logger})
	if err != nil {
		return nil, err
	}
	return claim.NewCoordinator(c, names), nil
}

// startReopen retries the handle's Init in the background. Called with mu
// held.
func (w *Worker) startReopen() {
	ctx, cancel := context.WithCancel(context.Background())
	w.stopReopen = cancel
	w.reopening = true
	w.reopen.Go(func() {
		wait := ReopenMinBackoff
		for attempt := 2; ; attempt++ {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			_, err := w.handle.Init(ctx)
			switch {
			case err == nil:
				w.opened(attempt)
				return
			case ctx.Err() != nil:
				return
			}
			w.logger.Warn("Cannot open the database; retrying", "database", w.handle.Where(), "err", err, "attempt", attempt, "next_in", min(2*wait, ReopenMaxBackoff))
			wait = min(2*wait, ReopenMaxBackoff)
		}
	})
}

// opened logs that the retry opened the database, and that the worker is
// ready when it has started: only then is /readyz free of the database's
// fault, and "Worker ready" must not be said before.
func (w *Worker) opened(attempts int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.reopening = false
	if w.phase != phaseStarted {
		w.logger.Info("Database open after retries", "database", w.handle.Where(), "attempts", attempts)
		return
	}
	w.logger.Info("Worker ready", "db", w.handle.Where(), "jobs", len(w.list), "attempts", attempts)
}

// Start opens the worker (see Open) unless it is open, and starts
// scheduling. It returns at once; the jobs run until Stop. It returns
// Open's errors, ErrStopped after Stop, and nil when already started.
func (w *Worker) Start(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.phase == phaseStarted {
		return nil
	}
	if err := w.openLocked(ctx); err != nil {
		return err
	}
	if err := w.sched.Start(); err != nil {
		return err
	}
	w.advance(phaseStarted)
	w.readiness.Ready()
	close(w.ready)
	if w.reopening {
		w.logger.Info("Worker started; not ready until the database opens", "db", w.handle.Where(), "jobs", len(w.list))
		return nil
	}
	w.logger.Info("Worker ready", "db", w.handle.Where(), "jobs", len(w.list))
	return nil
}

// Ready returns a channel closed once Start has succeeded.
func (w *Worker) Ready() <-chan struct{} { return w.ready }

// Stop stops scheduling, lets the runs in progress finish for the config's
// shutdown grace, then cancels them (a done ctx cancels them at once), and
// writes the run history still held in memory. Its error holds
// ErrStopTimeout when runs had to be abandoned and ErrHistoryLost when runs
// never reached job_runs. It is safe before Start and more than once; only
// the first call stops. The database stays open until Close.
func (w *Worker) Stop(ctx context.Context) error {
	w.mu.Lock()
	if w.stoppedLocked() {
		w.mu.Unlock()
		return nil
	}
	w.advance(phaseStopped)
	close(w.stopping)
	sched := w.sched
	if w.stopReopen != nil {
		w.stopReopen()
	}
	w.mu.Unlock()
	w.reopen.Wait()
	w.readiness.NotReady("shutting down")
	if sched == nil {
		return nil
	}
	err := sched.Stop(ctx)
	if errors.Is(err, ErrStopTimeout) {
		w.logger.Error("Jobs did not stop", "err", err)
	}
	if w.onRun != nil {
		w.onRun.close(ctx) // every run is over: its record is queued
	}
	return err
}

// Close stops the worker, as Stop, if it is not stopped, and closes the
// database: it checkpoints the WAL and releases the file. It returns the
// errors of that Stop that say runs were lost from history, and the
// database's. It is safe before Start and more than once.
func (w *Worker) Close(ctx context.Context) error {
	var errs []error
	if err := w.Stop(ctx); errors.Is(err, ErrHistoryLost) {
		errs = append(errs, err)
	}
	w.mu.Lock()
	closed := w.phase == phaseClosed
	w.advance(phaseClosed)
	w.mu.Unlock()
	if closed {
		return nil
	}
	if err := w.handle.Close(context.WithoutCancel(ctx)); err != nil {
		w.logger.Error("Database did not close cleanly", "err", err)
		errs = append(errs, err)
	}
	if w.fds != nil {
		// A scrape after Close still counts, opening the directory itself.
		if err := w.fds.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Run starts the worker, runs it until ctx is done, and then stops and
// closes it: scheduling stops, runs in progress get the shutdown grace, the
// history is flushed and the database closed. It returns Start's error or
// Close's.
func (w *Worker) Run(ctx context.Context) error {
	if err := w.Start(ctx); err != nil {
		return errors.Join(err, w.Close(context.WithoutCancel(ctx)))
	}
	<-ctx.Done()
	w.logger.Info("Stopping", "reason", context.Cause(ctx))
	return w.Close(context.WithoutCancel(ctx))
}

// HandlerOptions say what Handler serves.
type HandlerOptions struct {
	// TelemetryPath is where the metrics are served; "" means "/metrics".
	TelemetryPath string
	// Gatherer is served at TelemetryPath, such as the registry given to
	// Options.Registerer, or prometheus.Gatherers of it and the program's
	// own; nil serves an empty exposition.
	Gatherer prometheus.Gatherer
	// Registerer receives the handler's own metrics,
	// promhttp_metric_handler_requests_total and _in_flight, as the
	// daemon's /metrics has them; nil means Options.Registerer, and none
	// when that is nil too.
	Registerer prometheus.Registerer
	// MaxRequests bounds concurrent scrapes; those over it are answered
	// 503. 0 means no limit.
	MaxRequests int
	// Version is shown on the landing page.
	Version string
	// LandingPage renders the landing page served at / from what it is to
	// show; nil serves a plain HTML page of the worker's own. The worker
	// daemon's page, exporter-toolkit's, is web.LandingPage of package
	// github.com/sqlworker/worker/web: importing that package brings
	// exporter-toolkit's dependencies, which this package has none of.
	LandingPage func(Landing) (http.Handler, error)
	// EnableAdminAPI serves the admin API, off by default as in the
	// daemon's --web.enable-admin-api:
	//
	//   - GET /api/v1/jobs lists every job (name, kind, schedule, timeout,
	//     enabled, next_run, last_run) as JSON;
	//   - POST /api/v1/jobs/{name}/run runs a job now, through the same
	//     chain as a scheduled run, and answers its run record once it
	//     finished: 200 whatever its result, 404 for a job that is not
	//     scheduled (unknown or disabled), 409 with the skipped run's
	//     record while the job's previous run is going, 503 before Start
	//     and once Stop was called; 409 for a paused job, which runs nothing;
	//   - POST /api/v1/jobs/{name}/pause, with an optional JSON body
	//     {"reason": "..."}, and POST /api/v1/jobs/{name}/resume pause and
	//     resume a job (see Worker.Pause): 200 with its state, 404 and 503
	//     as run.
	//
	// It also puts Run now, Pause and Resume buttons on the status page.
	// The API has no authentication of its own: serve it behind the
	// program's (the daemon serves it behind the web config's TLS and
	// basic auth). See the README's Admin API for the JSON.
	EnableAdminAPI bool
	// EnablePprof serves net/http/pprof under /debug/pprof/ and links
	// its profiles from the landing page; off, neither is there. It also
	// makes the process-wide driver accounting record where each prepared
	// statement was prepared (sqlcount.stmts), besides its handles' and
	// connections' origins, so that a soak names a statement leak's origin.
	EnablePprof bool
	// Reload, when set, serves POST and PUT /-/reload, as the daemon's
	// --web.enable-lifecycle does (Prometheus's flag and path): each
	// request calls the Worker's Reload with it, and is answered 200 once
	// the config is applied, 500 with Reload's error when it is refused.
	// Like the admin API it has no authentication of its own. Nil serves
	// no such path.
	Reload func() (*Config, error)
}

// Handler returns the worker's HTTP face, as the worker daemon serves it: a
// landing page, the metrics of opts.Gatherer, /healthz (the process is up)
// and /readyz (200 once Start succeeded and while the database file is the
// one open, or the PostgreSQL server answered its last check, the history
// is written and no run reports a storage fault; 503 with the reasons
// otherwise), the status page /jobs (each job's state, next run and newest
// job_runs rows; read-only without the admin API), and the admin API,
// /-/reload and pprof when opts enable them. Mount it on a server of the
// program's own.
func (w *Worker) Handler(opts HandlerOptions) (http.Handler, error) {
	if opts.TelemetryPath == "" {
		opts.TelemetryPath = "/metrics"
	}
	g := opts.Gatherer
	if g == nil {
		g = prometheus.NewRegistry()
	}
	c := webpkg.Config{
		TelemetryPath: opts.TelemetryPath,
		Gatherer:      g,
		Registerer:    cmp.Or(opts.Registerer, w.reg),
		Readiness:     w.readiness,
		Version:       opts.Version,
		MaxRequests:   opts.MaxRequests,
		EnablePprof:   opts.EnablePprof,
	}
	if w.handle.Postgres() {
		c.Database = w.handle.Where() // the password masked
	}
	if load := opts.Reload; load != nil {
		c.Reload = func() error { return w.Reload(load) }
	}
	c.Jobs = admin{w} // the status page, read-only without the admin API
	if opts.EnableAdminAPI {
		c.Admin = admin{w}
	}
	if opts.EnablePprof {
		db.RecordStatementOrigins()
	}
	landing, err := landingPage(c, opts.LandingPage)
	if err != nil {
		return nil, fmt.Errorf("cannot build landing page: %w", err)
	}
	c.Landing = landing
	return webpkg.NewHandler(c)
}

// heartbeatIntervals is how many of its schedule's intervals the heartbeat
// may go without a success before the worker is not ready: as many as the
// WorkerJobStale alert allows.
const heartbeatIntervals = 3

// addChecks adds the readiness checks of a started scheduler.
func (w *Worker) addChecks(sched *jobs.Scheduler) {
	// Runs whose job_runs rows are held in memory for retry keep the
	// worker not ready until they are written.
	w.readiness.AddCheck("history", func() error {
		if err := sched.HistoryErr(); err != nil {
			return fmt.Errorf("cannot record job runs: %w", err)
		}
		return nil
	})
	// A heartbeat that is skipped, hangs or keeps failing: no run reports
	// it, so the time since its last success is checked on every request
	// (nil while it is disabled, which a reload can change).
	w.readiness.AddCheck(config.Heartbeat, func() error { return sched.Overdue(config.Heartbeat, heartbeatIntervals) })
}
