// Package worker embeds the SQL worker in a Go program: jobs on cron
// schedules, run against one shared SQLite handle, each run recorded in the
// job_runs table and in the worker_job_* metrics.
//
// Build a Worker with New from Options (a Config, a prometheus.Registerer,
// a *slog.Logger), register Go jobs with Register, and call Run:
//
//	w, err := worker.New(worker.Options{Config: cfg, Registerer: reg, Logger: logger})
//	if err != nil { ... }
//	err = w.Register("expire_sessions", "@every 1m", expireSessions, worker.WithTimeout(10*time.Second))
//	if err != nil { ... }
//	err = w.Run(ctx) // until ctx is done, then a graceful shutdown
//
// A Go job runs through exactly the chain a SQL job of the config file
// runs through: the run is recorded in job_runs and the metrics, skipped
// while its previous run is still going, a panic is recovered as a result
// of its own, the run is bounded by the job's timeout, and the database's
// idempotent Init comes first, so the job gets the one shared *sql.DB. At
// shutdown scheduling stops, running jobs get the config's shutdown grace,
// the history is flushed and the database closed.
//
// # Configuration
//
// A Config comes from a YAML file (LoadConfig, ParseConfig; LoadConfigWith
// with ConfigOverrides, as the daemon's --db.* flags) or is built in Go.
// Every field of Config and JobConfig is documented with its YAML key, and
// a zero value means the default: &Config{} is the config of an empty
// file, a JobConfig is enabled unless Disabled, and a Timeout of 0 is
// DefaultJobTimeout (a negative one, no bound). New, Reload and Register
// check a Config built in Go with the validation of the YAML file, and
// refuse what ParseConfig refuses with its reason; the error is a
// *ConfigError naming the Go field and the job, as
//
//	worker: job "purge": Config.Jobs[0].SQL: statement 1 (BEGIN) starts a transaction inside the job's; …
//
// The config file can hold SQL jobs beside the Go jobs, and an entry under
// jobs with no sql refers to a registered Go job by name, to reschedule,
// re-time or disable it. Register's options are JobOptions, which a user
// can write (NewJobOption); their errors are Register's, naming the job.
//
// Reload applies a new config to a running worker, as the daemon does on
// SIGHUP: jobs added, changed and removed take effect, runs already going
// finish under their old settings, and the settings of RestartSettings
// (the database's among them: the handle is never reopened) keep their
// old values. A refused config leaves the old one running, and
// worker_config_last_reload_successful says so.
//
// # Tests
//
// RunNow runs a job at once and returns its RunRecord; Options.OnRun is
// given the record of every finished run, from a goroutine of its own, so a
// test waits for runs instead of sleeping. Package
// github.com/sqlworker/worker/jobtest drives schedules by hand: on a worker
// that is open but not started, jobtest.RunTick runs the tick a job would
// run at a given time, through the same chain.
//
// # HTTP
//
// A Worker serves no HTTP of its own. Handler returns the worker daemon's
// paths (a plain landing page, the metrics, /healthz and /readyz), built on
// net/http and promhttp only, for a program to mount on a server of its own; a program that has its own
// health checks can leave it out, and the metrics are in the Registerer
// given either way. HandlerOptions.EnableAdminAPI adds the admin API
// (GET /api/v1/jobs, POST /api/v1/jobs/{name}/run: run a job now), and
// HandlerOptions.EnablePprof adds net/http/pprof, and HandlerOptions.Reload
// adds POST and PUT /-/reload; all are off by default and have no
// authentication of their own. Package github.com/sqlworker/worker/web
// holds the daemon's exporter-toolkit face: its landing page
// (HandlerOptions.LandingPage) and a server with TLS and basic auth.
//
// A program that serves the handler on a server of its own shuts down in
// this order: Stop (scheduling stops, the runs drain, the history is
// written), then its server's Shutdown, then Close (the database). After
// Stop, and after Close or Run returned, the handler answers /readyz 503
// ("shutting down"), /metrics 200 with the final counts and /healthz 200.
//
// # Stability
//
// The API is v0: it may change in any release until 1.0.
package worker
