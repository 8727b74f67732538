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
	"strconv"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/common/promslog"
	"github.com/prometheus/common/version"

	"github.com/sqlworker/worker"
	"github.com/sqlworker/worker/internal/clockskew"
	"github.com/sqlworker/worker/internal/db"
	"github.com/sqlworker/worker/internal/leak"
	"github.com/sqlworker/worker/sqlcount"
	workerweb "github.com/sqlworker/worker/web"
)

// httpShutdownTimeout bounds the wait for scrapes in progress at exit.
const httpShutdownTimeout = 5 * time.Second

// Main is the worker program. Its fields let tests run it in-process.
type Main struct {
	Stdout, Stderr io.Writer
	Signals        []os.Signal // first: graceful stop; second: forced exit
	Reloads        []os.Signal // reload the config file (SIGHUP)
	Exit           func(code int)
}

// NewMain returns a Main wired to the process.
func NewMain() *Main {
	return &Main{
		Stdout:  os.Stdout,
		Stderr:  os.Stderr,
		Signals: []os.Signal{syscall.SIGINT, syscall.SIGTERM},
		Reloads: []os.Signal{syscall.SIGHUP},
		Exit:    os.Exit,
	}
}

// daemon is a worker and the HTTP server in front of it.
type daemon struct {
	w         *worker.Worker
	cfg       *worker.Config
	srv       *http.Server
	listeners []net.Listener
	logger    *slog.Logger
}

// Run runs the worker until ctx is done or a signal arrives, then shuts it
// down (see shutdown).
func (m *Main) Run(ctx context.Context, args []string) error {
	f, err := parseFlags(args, m.Stdout, m.Stderr)
	if err != nil {
		return err
	}
	cfg, err := f.load()
	if err != nil {
		return err
	}
	if err := checkBuild(); err != nil {
		return err
	}
	if f.configCheck {
		w, err := worker.New(worker.Options{Config: cfg})
		if err != nil {
			return err
		}
		return printPlan(m.Stdout, cfg, w)
	}
	f.log.Writer = m.Stderr
	logger := promslog.New(&f.log)
	logger.Info("Starting worker", "version", version.Info(), "build_context", version.BuildContext())
	if leak.Enabled {
		logger.Warn("Leak-injection build: this binary leaks on purpose", "mode", leak.Mode())
	}
	if f.dbURL != "" {
		warnURLSecrets(logger, f.dbURL)
	}

	// Signals are caught from here on: one that arrives while the database
	// opens is handled as soon as the worker is up, as a graceful stop.
	sigs := make(chan os.Signal, 2)
	if len(m.Signals) > 0 {
		signal.Notify(sigs, m.Signals...)
		defer signal.Stop(sigs)
	}
	reloads := notifyReload(m.Reloads)
	defer reloads.stop()

	// sqlcount's pprof profiles cost one more stack walk per handle and
	// connection opened: recorded only by a worker that serves them.
	sqlcount.SetProfiles(f.pprof)
	d, err := build(ctx, f, cfg, logger)
	if d != nil {
		defer d.close()
	}
	if err != nil {
		return err
	}
	serveErr := d.serve(f)
	if err := d.w.Start(ctx); err != nil {
		return err
	}
	reloads.serve(d.w, f.load)

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
	stopCtx, cancelStop := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelStop()
	go m.escalate(sigs, logger, cancelStop)
	runErr = d.shutdown(stopCtx, runErr)
	logger.Info("Stopped")
	return runErr
}

// checkBuild checks the environment that a fault-injection build reads
// (internal/leak, internal/clockskew).
func checkBuild() error {
	if err := leak.Check(); err != nil {
		return &usageError{err}
	}
	if err := clockskew.Check(); err != nil {
		return &usageError{err}
	}
	return nil
}

// escalate handles the signals that come during shutdown: the second
// cancels the running jobs (cancelStop), the third exits at once.
func (m *Main) escalate(sigs <-chan os.Signal, logger *slog.Logger, cancelStop context.CancelFunc) {
	if _, ok := <-sigs; !ok {
		return
	}
	logger.Warn("Second signal: cancelling running jobs now")
	cancelStop()
	if _, ok := <-sigs; ok {
		logger.Error("Third signal: exiting without cleanup")
		m.Exit(1)
	}
}

// build builds the worker from the config, listens, and opens the worker:
// the listeners before Open, which opens the database, so that a port in
// use fails fast; scheduling starts once HTTP serves. The daemon it returns, also with an error, must be
// closed.
func build(ctx context.Context, f *flags, cfg *worker.Config, logger *slog.Logger) (*daemon, error) {
	d := &daemon{cfg: cfg, logger: logger}
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{ReportErrors: true}),
		collectors.NewGoCollector(),
		versioncollector.NewCollector(worker.DefaultNamespace),
	)
	w, err := worker.New(worker.Options{Config: cfg, Registerer: reg, Logger: logger})
	if err != nil {
		return d, err
	}
	d.w = w
	if _, err := w.Jobs(); err != nil { // a config entry naming no Go job
		return d, &usageError{err}
	}
	if !*f.web.WebSystemdSocket {
		for _, addr := range *f.web.WebListenAddresses {
			l, err := workerweb.Listen(addr)
			if err != nil {
				return d, fmt.Errorf("--web.listen-address %s: %w", addr, err)
			}
			d.listeners = append(d.listeners, l)
		}
	}
	handler, err := w.Handler(worker.HandlerOptions{
		TelemetryPath:  f.telemetryPath,
		Gatherer:       reg,
		LandingPage:    workerweb.LandingPage,
		MaxRequests:    f.maxRequests,
		Version:        version.Info(),
		EnableAdminAPI: f.adminAPI,
		EnablePprof:    f.pprof,
		Reload:         f.reloadFunc(),
	})
	if err != nil {
		return d, err
	}
	d.srv = &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	return d, w.Open(ctx)
}

// serve serves HTTP through exporter-toolkit (TLS, basic auth, systemd
// socket activation) until shutdown; the channel gets its error.
func (d *daemon) serve(f *flags) <-chan error {
	serveErr := make(chan error, 1)
	go func() { serveErr <- workerweb.Serve(d.srv, d.listeners, f.web, d.logger) }()
	return serveErr
}

// shutdown stops the daemon in order: stop scheduling, drain the runs
// (cancelled at once when ctx is done) and flush the history; stop HTTP;
// close the database. It returns runErr, or the errors that make the exit
// status 1: runs lost from history, a database that did not close cleanly.
func (d *daemon) shutdown(ctx context.Context, runErr error) error {
	if err := d.w.Stop(ctx); errors.Is(err, worker.ErrHistoryLost) && runErr == nil {
		runErr = err // runs that never reached job_runs: the exit status says so
	}
	httpCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), httpShutdownTimeout)
	defer cancel()
	if err := d.srv.Shutdown(httpCtx); err != nil {
		d.logger.Warn("HTTP server did not stop cleanly", "err", err)
	}
	if err := d.w.Close(ctx); err != nil {
		if runErr == nil || errors.Is(runErr, worker.ErrHistoryLost) {
			runErr = errors.Join(err, runErr)
		}
	}
	return runErr
}

// close releases what shutdown did not reach: the listeners and server of
// a daemon that failed to build or start, the database of a worker that
// failed to open.
func (d *daemon) close() {
	if d.srv != nil {
		d.srv.Close()
	}
	for _, l := range d.listeners {
		l.Close()
	}
	if d.w != nil {
		d.w.Close(context.Background())
	}
}

// printPlan prints what --config.check validated and would run.
func printPlan(out io.Writer, cfg *worker.Config, w *worker.Worker) error {
	list, err := w.Jobs()
	if err != nil {
		return &usageError{err}
	}
	if cfg.Postgres() {
		fmt.Fprintf(out, "config ok\ndatabase: %s (PostgreSQL, application_name %s, max_open_conns %d)\n", cfg.Database(), cfg.ApplicationName(), cfg.MaxOpenConns)
	} else {
		fmt.Fprintf(out, "config ok\ndatabase: %s (max_open_conns %d, busy_timeout %s, checkpoint %s)\n",
			cfg.DBPath, cfg.MaxOpenConns, cfg.BusyTimeout, cfg.Checkpoint)
	}
	fmt.Fprintf(out, "timezone: %s, shutdown_grace: %s\n", cfg.Location, cfg.ShutdownGrace)
	rowCap := "none"
	if cfg.HistoryMaxRowsPerJob > 0 {
		rowCap = strconv.Itoa(cfg.HistoryMaxRowsPerJob)
	}
	fmt.Fprintf(out, "history: retention %s, max_rows_per_job %s\n\n", cfg.HistoryRetention, rowCap)
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "JOB\tKIND\tSCHEDULE\tTIMEOUT\tENABLED\tNEXT RUN\tCATCH UP\tRETRIES\tJITTER")
	now := time.Now().In(cfg.Location)
	for _, j := range list {
		next := "-"
		if j.Enabled {
			next = j.Next(now).Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%t\t%s\t%s\t%s\t%s\n", j.Name, j.Kind, j.Spec, j.Timeout, j.Enabled, next,
			planCatchUp(j), planRetries(j), planDuration(j.Jitter))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	printDST(out, list, cfg.Location, now)
	return nil
}

// dstChangesPerJob bounds the daylight-saving lines --config.check prints
// for a job: a job every 15 minutes has four ticks in each changed hour.
const dstChangesPerJob = 3

// printDST prints the ticks of the enabled jobs that a daylight-saving
// change in the next 12 months skips or repeats, and when each runs. A job
// with '*' in its minute or hour (every 15 minutes, @hourly) under dst:
// cron runs by the new time, as it would any hour, and is left out.
func printDST(out io.Writer, list []worker.JobInfo, loc *time.Location, now time.Time) {
	header := false
	for _, j := range list {
		if !j.Enabled {
			continue
		}
		for _, c := range j.DSTChanges(loc, now, now.AddDate(1, 0, 0), dstChangesPerJob) {
			if !c.Fixed && j.DST == worker.DSTCron {
				continue
			}
			if !header {
				fmt.Fprintf(out, "\ndaylight saving, the next 12 months (dst: cron runs a skipped tick right after the change and a repeated one once; wall_clock as the clock shows):\n")
				header = true
			}
			fmt.Fprintf(out, "  %s (dst: %s): %s\n", j.Name, j.DST, c)
		}
	}
}

// planCatchUp says a job's catch-up policy, with the limit of "all".
func planCatchUp(j worker.JobInfo) string {
	if j.CatchUp != worker.CatchUpAll {
		return string(j.CatchUp)
	}
	limit := j.CatchUpLimit
	if limit == 0 {
		limit = worker.DefaultCatchUpLimit
	}
	return fmt.Sprintf("all (limit %d)", limit)
}

// planRetries says a job's retries and the first backoff, "-" for none.
func planRetries(j worker.JobInfo) string {
	if j.Retries == 0 {
		return "-"
	}
	b := j.RetryBackoff
	if b == 0 {
		b = worker.DefaultRetryBackoff
	}
	return fmt.Sprintf("%d (backoff %s)", j.Retries, b)
}

func planDuration(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	return d.String()
}

// urlSecretWarnings are the warnings of the secrets of db.SecretParams in
// a --db.url, each with where to give it instead of the command line.
var urlSecretWarnings = map[string]string{
	"password":    "The --db.url has a password, which every user can read in the process list: use --db.password-file, PGPASSWORD or PGPASSFILE",
	"sslpassword": "The --db.url has an sslpassword, which every user can read in the process list: use PGSSLPASSWORD, or a client key that is not encrypted and only the worker can read",
}

// warnURLSecrets logs a warning for each secret in the --db.url u, which
// every user can read in the process list.
func warnURLSecrets(logger *slog.Logger, u string) {
	for _, k := range db.URLSecrets(u) {
		logger.Warn(urlSecretWarnings[k], "param", k, "url", db.RedactURL(u))
	}
}
