package worker

import (
	"errors"
	"fmt"
	"time"

	"github.com/sqlworker/worker/internal/claim"
	"github.com/sqlworker/worker/internal/config"
	"github.com/sqlworker/worker/internal/db"
	"github.com/sqlworker/worker/internal/jobs"
)

// Config is the worker's configuration: the database, the scheduler, the
// history, and the jobs. Build one in Go, or with LoadConfig, ParseConfig
// or DefaultConfig, and give it to New or Reload. Each field's YAML key is
// in its comment; the zero value of a field means its default, so
// &Config{} is the configuration of an empty file.
//
// New and Reload check a Config as ParseConfig checks a file, and refuse
// what it refuses with the same reason; their error (a *ConfigError) names
// the field, as `worker: job "purge": Config.Jobs[5].Spec: must not be
// empty`.
type Config struct {
	// DBPath is the SQLite database file (database.path); "" means
	// DefaultDBPath. Unused with DBURL.
	DBPath string
	// DBURL is a postgres:// URL (database.url). Set, the worker uses
	// PostgreSQL there instead of the SQLite file: DBPath and the
	// SQLite-only settings (BusyTimeout, MaxPageCount, Checkpoint) must be
	// zero or the defaults DefaultConfig fills in, and the SQLite-only
	// built-in jobs (wal_checkpoint, optimize, quick_check) are not
	// offered: leave them out of Jobs, or set Disabled.
	DBURL string
	// DBPasswordFile is a file whose first line is the PostgreSQL password
	// (database.password_file), read at each connect; with DBURL only.
	DBPasswordFile string
	// DBReplicaID tells the replicas apart on PostgreSQL, as
	// application_name worker-<id> (database.replica_id); "" means
	// <hostname>-<pid>. With DBURL only.
	DBReplicaID string
	// MaxOpenConns bounds the connection pool (database.max_open_conns),
	// 1 to 1024; 0 means DefaultMaxOpenConns.
	MaxOpenConns int
	// BusyTimeout is how long SQLite waits for a lock
	// (database.busy_timeout), in whole milliseconds; 0 means
	// DefaultBusyTimeout.
	BusyTimeout time.Duration
	// MaxPageCount is PRAGMA max_page_count on every SQLite connection
	// (database.max_page_count), at most MaxPageCount; 0 means SQLite's
	// own limit.
	MaxPageCount int
	// Checkpoint says who checkpoints the SQLite WAL
	// (database.checkpoint): CheckpointWorker, or CheckpointExternal when
	// another process (Litestream) does; "" means DefaultCheckpoint.
	Checkpoint string
	// Location is the time zone of the schedules without CRON_TZ=
	// (scheduler.timezone); nil means time.Local.
	Location *time.Location
	// ShutdownGrace is how long runs may finish at shutdown
	// (scheduler.shutdown_grace); 0 means DefaultShutdownGrace.
	ShutdownGrace time.Duration
	// Lease is how long a replica's claim on a running tick holds without
	// a renewal, on PostgreSQL (scheduler.lease), at least MinLease; 0
	// means DefaultLease. It must be 0 on SQLite.
	Lease time.Duration
	// HistoryRetention is how long history_prune keeps job_runs rows
	// (history.retention), in whole milliseconds; 0 means
	// DefaultHistoryRetention, and a negative value keeps none (the file's
	// `retention: 0s`).
	HistoryRetention time.Duration
	// HistoryMaxRowsPerJob is how many job_runs rows history_prune keeps of
	// each job, the newest (history.max_rows_per_job); 0 caps nothing.
	HistoryMaxRowsPerJob int
	// DuplicateCheck is how often the ticks with more than one success
	// row are counted (history.duplicate_check_interval), at least
	// MinDuplicateCheck; 0 means DefaultDuplicateCheck.
	DuplicateCheck time.Duration
	// Jobs are the jobs: a JobConfig with Builtin set changes or disables
	// the built-in job of its name (builtin.<name>; one left out runs on
	// its production schedule), any other is a job under jobs: a SQL job,
	// or, without SQL, an entry for the Go job registered by its name.
	// At most MaxJobs jobs that are not built-in.
	Jobs []JobConfig

	source string // the file LoadConfig read, named by errors found later
	parsed bool   // from ParseConfig or LoadConfig: later errors name the file's keys
	empty  bool   // the document set nothing; a reload from a file refuses it
}

// JobConfig is one job of a Config. Its zero values mean the defaults: a
// job is enabled, bounded by DefaultJobTimeout (a built-in by its own,
// a Go job's entry by the Go job's own), records every run, skips the
// ticks it missed, is not retried and has no jitter.
type JobConfig struct {
	// Name is the job's name (name): lower case letters, digits and _,
	// starting with a letter, at most 63 characters; unique.
	Name string
	// Builtin marks one of the worker's own jobs (heartbeat,
	// wal_checkpoint, optimize, quick_check, history_prune), configured
	// under builtin.<name>; it takes no SQL.
	Builtin bool
	// Spec is the schedule (schedule): five cron fields, six with seconds,
	// a descriptor such as "@hourly" or "@every 5m", optionally after
	// CRON_TZ=<zone>; see the README's Configuration. A SQL job needs one;
	// "" keeps a built-in's or a Go job's own.
	Spec string
	// SQL is a SQL job's statements (sql), run in one transaction: they
	// must not begin, end or nest it, nor change the connection's
	// settings. "" makes the entry one of the Go job registered by Name.
	SQL string
	// Disabled leaves the job unscheduled (enabled: false).
	Disabled bool
	// Timeout bounds each run (timeout); 0 means the default, and a
	// negative value means no bound but shutdown.
	Timeout time.Duration
	// OmitSuccessRows leaves successful runs out of job_runs
	// (record_successes: false); they are still counted in the metrics.
	OmitSuccessRows bool
	// CatchUp is what happens to the ticks missed while the worker was
	// down or paused (catch_up): CatchUpSkip, CatchUpOnce or CatchUpAll;
	// "" means CatchUpSkip, or a Go job's own. Other than CatchUpSkip, it
	// needs the success rows (OmitSuccessRows false).
	CatchUp CatchUp
	// CatchUpLimit bounds the ticks CatchUpAll runs (catch_up_limit), at
	// most MaxCatchUpLimit; 0 means DefaultCatchUpLimit.
	CatchUpLimit int
	// Retries is how many more attempts a run gets after a retryable
	// failure (retries), at most MaxRetries; see WithRetries.
	Retries int
	// RetryBackoff is the wait before the first retry, doubled for each
	// next one (retry_backoff), at most MaxRetryBackoff; 0 means
	// DefaultRetryBackoff.
	RetryBackoff time.Duration
	// Jitter bounds a random delay of each scheduled run (jitter), less
	// than the schedule's interval; 0 means none.
	Jitter time.Duration
	// DST is the policy at daylight-saving changes (dst): DSTCron or
	// DSTWallClock; "" means DSTCron, or a Go job's own.
	DST DST
	// Overlap is what a run that comes while the job's previous run is
	// going does (overlap): OverlapSkip, OverlapBufferOne or
	// OverlapReplace; "" means OverlapSkip, or a Go job's own.
	Overlap Overlap
}

// Defaults and bounds of a Config, each named after its one owner: the
// database handle's (internal/db), the scheduler's (internal/jobs), the
// claims' (internal/claim), the config check's (internal/config).
const (
	DefaultDBPath           = db.DefaultPath                 // Config.DBPath
	DefaultMaxOpenConns     = db.DefaultMaxOpenConns         // Config.MaxOpenConns
	DefaultBusyTimeout      = db.DefaultBusyTimeout          // Config.BusyTimeout
	DefaultShutdownGrace    = jobs.DefaultShutdownGrace      // Config.ShutdownGrace
	DefaultHistoryRetention = config.DefaultHistoryRetention // Config.HistoryRetention
	DefaultCheckpoint       = db.DefaultCheckpoint           // Config.Checkpoint: CheckpointWorker
	DefaultLease            = claim.DefaultLease             // Config.Lease
	MinLease                = config.MinLease                // Config.Lease
	DefaultDuplicateCheck   = jobs.DefaultDuplicateCheck     // Config.DuplicateCheck
	MinDuplicateCheck       = config.MinDuplicateCheck       // Config.DuplicateCheck
	MaxPageCount            = config.MaxPageCount            // Config.MaxPageCount: SQLite's own largest
	MaxBusyTimeout          = config.MaxBusyTimeout          // Config.BusyTimeout: a C int of milliseconds
	MaxHistoryRowsPerJob    = config.MaxHistoryRowsPerJob    // Config.HistoryMaxRowsPerJob
	MaxJobs                 = config.MaxJobs                 // Config.Jobs that are not built-in
	// DefaultJobTimeout bounds a run of a job with no timeout of its own:
	// a SQL job, or a Go job registered without WithTimeout.
	DefaultJobTimeout = config.DefaultJobTimeout
)

// The modes of Config.Checkpoint.
const (
	// CheckpointWorker: the worker checkpoints the WAL (the wal_checkpoint
	// built-in, at shutdown, and SQLite's automatic checkpoints).
	CheckpointWorker = config.CheckpointWorker
	// CheckpointExternal: another process, such as Litestream, owns
	// checkpointing; the wal_checkpoint built-in is disabled, and refused
	// when enabled.
	CheckpointExternal = config.CheckpointExternal
)

// The built-in jobs, by name.
const (
	BuiltinHeartbeat     = config.Heartbeat
	BuiltinWALCheckpoint = config.WALCheckpoint
	BuiltinOptimize      = config.Optimize
	BuiltinQuickCheck    = config.QuickCheck
	BuiltinHistoryPrune  = config.HistoryPrune
)

// Postgres reports whether c uses PostgreSQL (DBURL).
func (c *Config) Postgres() bool { return c.DBURL != "" }

// Database returns what the worker opens, for logs and display: the
// database file's path, or the URL with its password masked.
func (c *Config) Database() string {
	if c.DBURL != "" {
		return db.RedactURL(c.DBURL)
	}
	return cmpOr(c.DBPath, DefaultDBPath)
}

// ApplicationName returns the application_name of the worker's
// PostgreSQL connections, "" for SQLite.
func (c *Config) ApplicationName() string {
	if !c.Postgres() {
		return ""
	}
	return db.ApplicationName(cmpOr(c.DBReplicaID, db.DefaultReplicaID()))
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// DefaultConfig returns the configuration of an empty file with every
// default of its settings filled in: the database at DefaultDBPath, and no
// Jobs, so that every built-in job runs on its production schedule (list
// one with Builtin set to change it). Setting DBURL or CheckpointExternal
// on it needs no other change.
func DefaultConfig() *Config {
	c := fromInternal(config.Default())
	c.parsed, c.Jobs = false, nil
	return c
}

// LoadConfig reads and validates the YAML file at path. Every error is one
// line naming the file and the field, as
// `config file worker.yml: jobs[2].schedule: ...`; one that the file
// cannot be read is a *ReadConfigError.
func LoadConfig(path string) (*Config, error) { return LoadConfigWith(path, ConfigOverrides{}) }

// ParseConfig validates a YAML document, as LoadConfig does a file. The
// Config lists every built-in job the document offers, with its settings
// resolved; an empty document yields DefaultConfig's settings.
func ParseConfig(b []byte) (*Config, error) { return ParseConfigWith(b, ConfigOverrides{}) }

// ConfigOverrides are database settings given beside the file, as the
// worker daemon's --db.* flags are: each one set wins over the file's, is
// validated with it, and an error about it names the flag. A field left ""
// keeps the file's.
type ConfigOverrides struct {
	DBPath         string // --db.path, over database.path
	DBURL          string // --db.url, over database.url
	DBPasswordFile string // --db.password-file, over database.password_file
	DBReplicaID    string // --db.replica-id, over database.replica_id
}

func (o ConfigOverrides) internal() config.Overrides {
	return config.Overrides{DBPath: o.DBPath, DBURL: o.DBURL, DBPasswordFile: o.DBPasswordFile, DBReplicaID: o.DBReplicaID}
}

// LoadConfigWith is LoadConfig with overrides of the file's settings.
func LoadConfigWith(path string, o ConfigOverrides) (*Config, error) {
	c, err := config.LoadWith(path, o.internal())
	var re *config.ReadError
	if errors.As(err, &re) {
		return nil, &ReadConfigError{Path: re.Path, Err: re.Err}
	}
	if err != nil {
		return nil, err
	}
	return fromInternal(c), nil
}

// ParseConfigWith is ParseConfig with overrides of the document's settings.
func ParseConfigWith(b []byte, o ConfigOverrides) (*Config, error) {
	c, err := config.ParseWith(b, o.internal())
	if err != nil {
		return nil, err
	}
	return fromInternal(c), nil
}

// ReadConfigError is LoadConfig's error when the file cannot be read:
// missing, unreadable, a directory, a FIFO, a symbolic link loop.
type ReadConfigError struct {
	Path string
	Err  error // as the system said it
}

func (e *ReadConfigError) internal() *config.ReadError {
	return &config.ReadError{Path: e.Path, Err: e.Err}
}

// Error names the file and says why, in one form whatever the cause.
func (e *ReadConfigError) Error() string { return e.internal().Error() }
func (e *ReadConfigError) Unwrap() error { return e.Err }

// Reason is why the file cannot be read, without the path that
// os.PathError repeats ("no such file or directory", "not a regular file:
// a directory").
func (e *ReadConfigError) Reason() string { return e.internal().Reason() }

// ConfigError is the error of New, Reload and Register for a setting they
// refuse: the same reason ParseConfig gives for it in a file, with the
// field of the Config.
type ConfigError struct {
	Field  string // the field, such as "Config.Jobs[5].Spec" or "Config.Checkpoint"
	Job    string // the job's name, when the field is a job's and the name is valid
	Reason string // why, as ParseConfig says it after the key, such as "must not be empty"
	// Err is ParseConfig's error for the same setting in a file, naming
	// its key, such as `jobs[0].schedule: must not be empty`.
	Err error
}

func (e *ConfigError) Error() string {
	if e.Job != "" {
		return fmt.Sprintf("worker: job %q: %s: %s", e.Job, e.Field, e.Reason)
	}
	return fmt.Sprintf("worker: %s: %s", e.Field, e.Reason)
}

func (e *ConfigError) Unwrap() error { return e.Err }
