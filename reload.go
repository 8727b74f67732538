package worker

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sqlworker/worker/internal/config"
	"github.com/sqlworker/worker/internal/jobs"
)

// RestartSettings are the settings of a Config that a Reload cannot change,
// by their keys in the file: the database handle is never reopened, and the
// scheduler's time zone and shutdown grace and the history's limits are
// fixed at New. A Reload keeps their old values and logs their names.
var RestartSettings = []string{
	"database.path",
	"database.max_open_conns",
	"database.busy_timeout",
	"database.max_page_count",
	"database.checkpoint",
	"scheduler.timezone",
	"scheduler.shutdown_grace",
	"history.retention",
	"history.max_rows_per_job",
}

// Reload applies the configuration that load returns without a restart,
// as the daemon does on SIGHUP and POST /-/reload:
//
//   - the jobs added, changed or removed take effect (see the README's
//     "Reloading the config"); a run already going finishes under its old
//     settings, and a changed job never runs beside its old self;
//   - the settings in RestartSettings keep their old values, and a
//     warning names those that differ;
//   - the database handle is not reopened.
//
// A load error, or a config that does not resolve (ErrNoGoJob), is
// returned as it is, one line naming the field; the old config keeps
// running, and it is logged as one error line. Every call sets
// worker_config_last_reload_successful (1 or 0) and, on success,
// worker_config_last_reload_success_timestamp_seconds. Calls are
// serialised. It returns ErrStopped after Stop.
func (w *Worker) Reload(load func() (*Config, error)) error {
	w.reloadMu.Lock()
	defer w.reloadMu.Unlock()
	cfg, err := load()
	if err == nil {
		err = w.apply(cfg)
	}
	if err != nil {
		w.reloads.successful.Set(0)
		w.logger.Error("Config reload refused, the old config keeps running", "err", err)
		return err
	}
	w.reloads.successful.Set(1)
	w.reloads.timestamp.SetToCurrentTime()
	return nil
}

// apply swaps the worker's config for cfg, but for RestartSettings.
func (w *Worker) apply(cfg *Config) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		return ErrStopped
	}
	if cfg.Postgres() != w.cfg.Postgres() {
		// The built-in jobs on offer differ: the new config's would not fit.
		err := errors.New("database.url: cannot switch between SQLite and PostgreSQL in a reload; restart the worker")
		if cfg.Source != "" {
			err = fmt.Errorf("config file %s: %w", cfg.Source, err)
		}
		return err
	}
	next, kept := keepRestartSettings(w.cfg, cfg)
	if next.Checkpoint == config.CheckpointExternal {
		for _, j := range next.Jobs {
			if j.Name == config.WALCheckpoint && j.Enabled {
				return fmt.Errorf("%s.enabled: %w", j.Field, config.ErrCheckpointExternal)
			}
		}
	}
	plan, err := w.plan(next)
	if err != nil {
		return err
	}
	list := scheduled(plan)
	var ch jobs.Changes
	if w.sched != nil {
		if ch, err = w.sched.Replace(list); err != nil {
			return err
		}
		w.list = list
	}
	w.cfg = next
	if len(kept) > 0 {
		w.logger.Warn("Config settings that need a restart keep their old values", "settings", kept)
	}
	w.logger.Info("Config reloaded", "jobs", len(list), "added", ch.Added, "changed", ch.Changed, "removed", ch.Removed)
	return nil
}

// keepRestartSettings returns a copy of cfg with old's values of the
// RestartSettings, and the names of those that cfg changed.
func keepRestartSettings(old, cfg *Config) (*Config, []string) {
	next := *cfg
	var kept []string
	keep(&kept, "database.path", &next.DBPath, old.DBPath)
	keep(&kept, "database.max_open_conns", &next.MaxOpenConns, old.MaxOpenConns)
	keep(&kept, "database.busy_timeout", &next.BusyTimeout, old.BusyTimeout)
	keep(&kept, "database.max_page_count", &next.MaxPageCount, old.MaxPageCount)
	keep(&kept, "database.checkpoint", &next.Checkpoint, old.Checkpoint)
	if next.Location.String() != old.Location.String() {
		kept = append(kept, "scheduler.timezone")
	}
	next.Location = old.Location
	keep(&kept, "scheduler.shutdown_grace", &next.ShutdownGrace, old.ShutdownGrace)
	keep(&kept, "history.retention", &next.HistoryRetention, old.HistoryRetention)
	keep(&kept, "history.max_rows_per_job", &next.HistoryMaxRowsPerJob, old.HistoryMaxRowsPerJob)
	return &next, kept
}

// keep sets *v back to old, and appends name to kept, when they differ.
func keep[T comparable](kept *[]string, name string, v *T, old T) {
	if *v != old {
		*kept = append(*kept, name)
		*v = old
	}
}

// scheduled returns the enabled jobs of a plan as the scheduler runs them.
func scheduled(plan []JobInfo) []jobs.Job {
	var list []jobs.Job
	for _, p := range plan {
		if p.Enabled {
			list = append(list, jobs.Job{Name: p.Name, Spec: p.Spec, Schedule: p.Schedule, Timeout: p.Timeout, Func: p.fn,
				RunAtStart: p.runAtStart, OmitSuccessRows: p.omitSuccessRows, Source: p.source,
				CatchUp: p.CatchUp, CatchUpLimit: p.CatchUpLimit, Retries: p.Retries, RetryBackoff: p.RetryBackoff, Jitter: p.Jitter})
		}
	}
	return list
}

// reloadMetrics are Prometheus's own names for the outcome of a reload.
type reloadMetrics struct {
	successful prometheus.Gauge
	timestamp  prometheus.Gauge
}

func newReloadMetrics(namespace string) reloadMetrics {
	m := reloadMetrics{
		successful: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: "config", Name: "last_reload_successful",
			Help: "1 when the last config reload succeeded (or none was asked for since the start), 0 when it was refused.",
		}),
		timestamp: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: "config", Name: "last_reload_success_timestamp_seconds",
			Help: "Unix time of the last config load that succeeded: the start, or the last successful reload.",
		}),
	}
	m.successful.Set(1)
	m.timestamp.SetToCurrentTime()
	return m
}
