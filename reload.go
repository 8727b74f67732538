package worker

import (
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sqlworker/worker/internal/config"
	"github.com/sqlworker/worker/internal/jobs"
)

// RestartSettings returns the settings of a Config that a Reload cannot
// change, by their keys in the file (a switch between SQLite and PostgreSQL
// is refused outright): the database handle is never reopened,
// and the scheduler's time zone and shutdown grace and the history's limits
// are fixed at New. A Reload keeps their old values and logs the names of
// those the new config changed.
func RestartSettings() []string {
	names := make([]string, len(restartSettings))
	for i, r := range restartSettings {
		names[i] = r.name
	}
	return names
}

// restartSettings are RestartSettings, each with a func that sets next's
// value back to old's and reports whether they differed.
var restartSettings = []struct {
	name string
	keep func(next, old *config.Config) bool
}{
	{"database.path", field(func(c *config.Config) *string { return &c.DBPath })},
	{"database.url", field(func(c *config.Config) *string { return &c.DBURL })},
	{"database.password_file", field(func(c *config.Config) *string { return &c.DBPasswordFile })},
	{"database.replica_id", field(func(c *config.Config) *string { return &c.DBReplicaID })},
	{"database.max_open_conns", field(func(c *config.Config) *int { return &c.MaxOpenConns })},
	{"database.busy_timeout", field(func(c *config.Config) *time.Duration { return &c.BusyTimeout })},
	{"database.max_page_count", field(func(c *config.Config) *int { return &c.MaxPageCount })},
	{"database.checkpoint", field(func(c *config.Config) *string { return &c.Checkpoint })},
	{"scheduler.timezone", func(next, old *config.Config) bool {
		changed := next.Location.String() != old.Location.String()
		next.Location = old.Location
		return changed
	}},
	{"scheduler.shutdown_grace", field(func(c *config.Config) *time.Duration { return &c.ShutdownGrace })},
	{"scheduler.lease", field(func(c *config.Config) *time.Duration { return &c.Lease })},
	{"history.retention", field(func(c *config.Config) *time.Duration { return &c.HistoryRetention })},
	{"history.max_rows_per_job", field(func(c *config.Config) *int { return &c.HistoryMaxRowsPerJob })},
	{"history.duplicate_check_interval", field(func(c *config.Config) *time.Duration { return &c.DuplicateCheck })},
}

// field returns a restartSettings keep func for the field that get points at.
func field[T comparable](get func(*config.Config) *T) func(next, old *config.Config) bool {
	return func(next, old *config.Config) bool {
		v, o := get(next), get(old)
		changed := *v != *o
		*v = *o
		return changed
	}
}

// Reload applies the configuration that load returns without a restart,
// as the daemon does on SIGHUP and POST /-/reload:
//
//   - the jobs added, changed or removed take effect (see the README's
//     "Reloading the config"); a run already going finishes under its old
//     settings, and a changed job never runs beside its old self;
//   - the settings of RestartSettings keep their old values, and a
//     warning names those that differ;
//   - the database handle is not reopened.
//
// A load error, or a config that does not resolve (ErrNoGoJob), is
// returned as it is, one line naming the field, and a Config that New
// would refuse is refused with New's error (a *ConfigError); the old
// config keeps running, and it is logged as one error line. Every call sets
// worker_config_last_reload_successful (1 or 0) and, on success,
// worker_config_last_reload_success_timestamp_seconds. Calls are
// serialised. It returns ErrStopped after Stop.
//
// A load that does not return within ReloadLoadTimeout (a config file on a
// hung network mount) fails the reload with ErrReloadTimeout; one that is
// going when Stop is called fails it with ErrStopped. Either way the load
// is left to end on its own, and its result is dropped: a stuck read never
// holds up a later reload, nor the exit.
func (w *Worker) Reload(load func() (*Config, error)) error {
	w.reloadMu.Lock()
	defer w.reloadMu.Unlock()
	cfg, err := w.boundedLoad(load)
	var next *config.Config
	if err == nil {
		next, err = cfg.check()
	}
	if err == nil {
		err = w.apply(next)
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

// ReloadLoadTimeout bounds the wait of Reload for its load.
const ReloadLoadTimeout = 10 * time.Second

// ErrReloadTimeout is the error of a Reload whose load did not return
// within ReloadLoadTimeout.
var ErrReloadTimeout = errors.New("reading the config did not finish in time; the read is abandoned")

// reloadLoadTimeout is ReloadLoadTimeout; tests shorten it.
var reloadLoadTimeout = ReloadLoadTimeout

// boundedLoad runs load in its own goroutine and waits for it, at most
// reloadLoadTimeout and not past Stop.
func (w *Worker) boundedLoad(load func() (*Config, error)) (*Config, error) {
	type result struct {
		cfg *Config
		err error
	}
	done := make(chan result, 1) // the abandoned load's send never blocks
	go func() {
		cfg, err := load()
		done <- result{cfg, err}
	}()
	timer := time.NewTimer(reloadLoadTimeout)
	defer timer.Stop()
	select {
	case r := <-done:
		return r.cfg, r.err
	case <-timer.C:
		return nil, fmt.Errorf("%w (%s)", ErrReloadTimeout, reloadLoadTimeout)
	case <-w.stopping:
		return nil, ErrStopped
	}
}

// apply swaps the worker's config for cfg, but for RestartSettings.
func (w *Worker) apply(cfg *config.Config) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stoppedLocked() {
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
	if cfg.Empty && cfg.Source != "" {
		// An editor or a config manager that truncates the file and writes
		// it again, with a SIGHUP between, would stop every job.
		return fmt.Errorf("config file %s: is empty: a reload would remove every job of the config; write `jobs: []` to mean that", cfg.Source)
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
	if len(ch.Removed) > 0 {
		w.logger.Warn("Config reload removed jobs: they no longer run", "removed", ch.Removed)
	}
	w.logger.Info("Config reloaded", "jobs", len(list), "added", ch.Added, "changed", ch.Changed, "removed", ch.Removed)
	return nil
}

// keepRestartSettings returns a copy of cfg with old's values of the
// RestartSettings, and the names of those that cfg changed.
func keepRestartSettings(old, cfg *config.Config) (*config.Config, []string) {
	next := *cfg
	var kept []string
	for _, r := range restartSettings {
		if r.keep(&next, old) {
			kept = append(kept, r.name)
		}
	}
	return &next, kept
}

// scheduled returns the enabled jobs of a plan as the scheduler runs them.
func scheduled(plan []JobInfo) []jobs.Job {
	var list []jobs.Job
	for _, p := range plan {
		if p.Enabled {
			list = append(list, jobs.Job{Name: p.Name, Spec: p.Spec, Schedule: p.schedule, DST: p.DST, Timeout: p.Timeout, Func: p.fn,
				RunAtStart: p.runAtStart, OmitSuccessRows: p.omitSuccessRows, Source: p.source, PerReplica: p.perReplica,
				CatchUp: p.CatchUp, CatchUpLimit: p.CatchUpLimit, Retries: p.Retries, RetryBackoff: p.RetryBackoff, Jitter: p.Jitter, Overlap: p.Overlap})
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
