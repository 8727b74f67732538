package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/common/promslog"
	"github.com/prometheus/common/version"
	"github.com/prometheus/exporter-toolkit/web"

	"github.com/sqlworker/worker/fdstat"
	"github.com/sqlworker/worker/internal/config"
	"github.com/sqlworker/worker/internal/db"
	"github.com/sqlworker/worker/internal/jobs"
	"github.com/sqlworker/worker/internal/leak"
	webpkg "github.com/sqlworker/worker/internal/web"
)

const (
	namespace = "worker"
	// httpShutdownTimeout bounds the wait for scrapes in progress at exit.
	httpShutdownTimeout = 5 * time.Second
)

// Main is the worker program. Its fields let tests run it in-process.
type Main struct {
	Stdout, Stderr io.Writer
	Signals        []os.Signal // first: graceful stop; second: forced exit
	Exit           func(code int)
}

// NewMain returns a Main wired to the process.
func NewMain() *Main {
	return &Main{
		Stdout:  os.Stdout,
		Stderr:  os.Stderr,
		Signals: []os.Signal{syscall.SIGINT, syscall.SIGTERM},
		Exit:    os.Exit,
	}
}

// Run runs the worker until ctx is done or a signal arrives, then shuts it
// down in order: stop scheduling, drain runs, stop HTTP, close the database.
func (m *Main) Run(ctx context.Context, args []string) error {
	f, err := parseFlags(args, m.Stdout, m.Stderr)
	if err != nil {
		return err
	}
	cfg, err := f.load()
	if err != nil {
		return err
	}
	if err := leak.Check(); err != nil {
		return &usageError{err}
	}
	if f.configCheck {
		return printPlan(m.Stdout, cfg)
	}
	f.log.Writer = m.Stderr
	logger := promslog.New(&f.log)
	logger.Info("Starting worker", "version", version.Info(), "build_context", version.BuildContext())
	if leak.Enabled {
		logger.Warn("Leak-injection build: this binary leaks on purpose", "mode", leak.Mode())
	}

	// Signals are caught from here on: one that arrives while the database
	// opens is handled as soon as the worker is up, as a graceful stop.
	sigs := make(chan os.Signal, 2)
	if len(m.Signals) > 0 {
		signal.Notify(sigs, m.Signals...)
		defer signal.Stop(sigs)
	}

	// Listen before anything else, so that a port in use fails fast.
	var listeners []net.Listener
	defer func() {
		for _, l := range listeners {
			l.Close()
		}
	}()
	if !*f.web.WebSystemdSocket {
		for _, addr := range *f.web.WebListenAddresses {
			l, err := net.Listen("tcp", addr)
			if err != nil {
				return fmt.Errorf("--web.listen-address %s: %w", addr, errors.Unwrap(err))
			}
			listeners = append(listeners, l)
		}
	}

	handle := db.New(db.Config{
		Path:         cfg.DBPath,
		MaxOpenConns: cfg.MaxOpenConns,
		BusyTimeout:  cfg.BusyTimeout,
		MaxPageCount: int64(cfg.MaxPageCount),
		Logger:       logger,
	})
	defer handle.Close(context.Background())
	if _, err := handle.Init(ctx); err != nil {
		return err
	}

	reg := prometheus.NewRegistry()
	builtins := jobs.NewBuiltins(namespace, version.Version, cfg.HistoryRetention)
	builtins.Verify = handle.Verify
	reg.MustRegister(
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{ReportErrors: true}),
		collectors.NewGoCollector(),
		versioncollector.NewCollector(namespace),
		// Reads the handle open at scrape time: Verify can replace it.
		db.NewDBStatsCollector(handle, "main"),
		db.NewCollector(namespace, handle),
		fdstat.NewCollector(fdstat.NewCounter(cfg.DBPath), fdstat.WithNamespace(namespace)),
		builtins,
	)

	// Readiness: the lifecycle, the database file check on every request,
	// and the faults that runs report.
	readiness := webpkg.NewReadiness("starting")
	readiness.AddCheck("database", handle.Health)
	faults := &runFaults{readiness: readiness, logger: logger}

	jobList, err := buildJobs(cfg, builtins)
	if err != nil {
		return err
	}
	sched, err := jobs.New(jobs.Config{
		DB:            handle,
		Location:      cfg.Location,
		ShutdownGrace: cfg.ShutdownGrace,
		Registerer:    reg,
		Logger:        logger,
		OnFinish:      faults.observe,
	}, jobList)
	if err != nil {
		return err
	}
	// Runs whose job_runs rows are held in memory for retry keep the
	// worker not ready until they are written.
	readiness.AddCheck("history", func() error {
		if err := sched.HistoryErr(); err != nil {
			return fmt.Errorf("cannot record job runs: %w", err)
		}
		return nil
	})
	// A heartbeat that is skipped, hangs or keeps failing: no run reports
	// it, so the time since its last success is checked on every request.
	if hasJob(jobList, config.Heartbeat) {
		readiness.AddCheck(config.Heartbeat, func() error { return sched.Overdue(config.Heartbeat, heartbeatIntervals) })
	}

	handler, err := webpkg.NewHandler(webpkg.Config{
		TelemetryPath: f.telemetryPath,
		Registry:      reg,
		Readiness:     readiness,
		Version:       version.Info(),
		MaxRequests:   f.maxRequests,
	})
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	serveErr := make(chan error, 1)
	go func() {
		var err error
		if *f.web.WebSystemdSocket {
			err = web.ListenAndServe(srv, f.web, logger)
		} else {
			err = web.ServeMultiple(listeners, srv, f.web, logger)
		}
		serveErr <- err
	}()

	if err := sched.Start(); err != nil {
		return err
	}
	readiness.Ready()
	logger.Info("Worker ready", "db", cfg.DBPath, "jobs", len(jobList))

	var runErr error
	select {
	case <-ctx.Done():
		logger.Info("Stopping", "reason", context.Cause(ctx))
	case sig := <-sigs:
		logger.Info("Stopping", "signal", sig.String(), "grace", cfg.ShutdownGrace)
	case err := <-serveErr:
		runErr = fmt.Errorf("cannot serve http: %w", err)
		logger.Error("Stopping", "err", runErr)
	}

	// A second signal ends the grace period at once, a third exits.
	readiness.NotReady("shutting down")
	stopCtx, cancelStop := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelStop()
	go func() {
		if _, ok := <-sigs; !ok {
			return
		}
		logger.Warn("Second signal: cancelling running jobs now")
		cancelStop()
		if _, ok := <-sigs; ok {
			logger.Error("Third signal: exiting without cleanup")
			m.Exit(1)
		}
	}()
	if err := sched.Stop(stopCtx); err != nil {
		if errors.Is(err, jobs.ErrStopTimeout) {
			logger.Error("Jobs did not stop", "err", err)
		}
		// Runs that never reached job_runs: the exit status says so.
		if errors.Is(err, jobs.ErrHistoryLost) && runErr == nil {
			runErr = err
		}
	}

	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), httpShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		logger.Warn("HTTP server did not stop cleanly", "err", err)
	}
	if err := handle.Close(context.WithoutCancel(ctx)); err != nil {
		logger.Error("Database did not close cleanly", "err", err)
		if runErr == nil || errors.Is(runErr, jobs.ErrHistoryLost) {
			runErr = errors.Join(err, runErr)
		}
	}
	logger.Info("Stopped")
	return runErr
}

// heartbeatIntervals is how many of its schedule's intervals the heartbeat
// may go without a success before the worker is not ready: as many as the
// WorkerJobStale alert allows.
const heartbeatIntervals = 3

// runFaults turns finished runs into readiness faults: the heartbeat's
// result, and any job's failure with a storage error (database full,
// read-only, I/O error: see db.IsStorageError), which is not that job's
// fault. Each clears on the next success of what set it, so the worker
// becomes ready again by itself. A fault follows the newest run, by
// scheduled time: a run whose record arrives after a newer run's (its
// history write took longer) does not overwrite what the newer one said.
// Skipped runs say nothing; the heartbeat's Overdue check notices them.
// The history's state is a readiness check of its own (Scheduler.HistoryErr).
type runFaults struct {
	readiness *webpkg.Readiness
	logger    *slog.Logger
}

func (f *runFaults) observe(r *jobs.Run, _ error) {
	at := r.ScheduledAt
	if at.IsZero() {
		at = r.StartedAt
	}
	switch {
	case r.Result == jobs.Skipped:
	case r.Job == config.Heartbeat:
		var err error
		if r.Result != jobs.Success {
			err = fmt.Errorf("%s: %w", r.Result, r.Err)
		}
		f.set("heartbeat", at, err)
	case r.Result == jobs.Success:
		f.set("job "+r.Job, at, nil)
	case db.IsStorageError(r.Err):
		f.set("job "+r.Job, at, fmt.Errorf("%s: %w", r.Result, r.Err))
	}
}

func (f *runFaults) set(name string, at time.Time, err error) {
	if !f.readiness.SetFaultAt(name, at, err) {
		return
	}
	if err != nil {
		f.logger.Warn("Not ready", "fault", name, "err", err)
	} else {
		f.logger.Info("Fault cleared", "fault", name)
	}
}

func hasJob(js []jobs.Job, name string) bool {
	for _, j := range js {
		if j.Name == name {
			return true
		}
	}
	return false
}

// buildJobs turns the enabled jobs of the config into scheduler jobs.
func buildJobs(cfg *config.Config, b *jobs.Builtins) ([]jobs.Job, error) {
	var out []jobs.Job
	for _, j := range cfg.EnabledJobs() {
		fn := jobs.SQLFunc(j.SQL)
		if j.Builtin {
			var err error
			if fn, err = b.Func(j.Name); err != nil {
				return nil, err
			}
		}
		out = append(out, jobs.Job{Name: j.Name, Spec: j.Schedule, Schedule: j.Parsed, Timeout: j.Timeout, Func: fn})
	}
	return out, nil
}

// printPlan prints what --config.check validated and would run.
func printPlan(w io.Writer, cfg *config.Config) error {
	fmt.Fprintf(w, "config ok\ndatabase: %s (max_open_conns %d, busy_timeout %s)\n", cfg.DBPath, cfg.MaxOpenConns, cfg.BusyTimeout)
	fmt.Fprintf(w, "timezone: %s, shutdown_grace: %s, history retention: %s\n\n", cfg.Location, cfg.ShutdownGrace, cfg.HistoryRetention)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "JOB\tKIND\tSCHEDULE\tTIMEOUT\tENABLED\tNEXT RUN")
	now := time.Now().In(cfg.Location)
	for _, j := range cfg.Jobs {
		kind, next := "sql", "-"
		if j.Builtin {
			kind = "builtin"
		}
		if j.Enabled {
			next = j.Parsed.Next(now).Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%t\t%s\n", j.Name, kind, j.Schedule, j.Timeout, j.Enabled, next)
	}
	return tw.Flush()
}
