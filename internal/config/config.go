// Package config loads and validates the worker's YAML configuration. Every
// error names the field it is about, as `jobs[2].schedule: ...`, on one line.
package config

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/sqlworker/worker/internal/claim"
	"github.com/sqlworker/worker/internal/db"
	"github.com/sqlworker/worker/internal/jobs"
	"github.com/sqlworker/worker/internal/regularfile"
	"github.com/sqlworker/worker/internal/schedule"
	"github.com/sqlworker/worker/internal/sqlstmt"
)

// Defaults and bounds of the configuration. The defaults of the database,
// the scheduler and the claims are their owners' (db.DefaultPath,
// db.DefaultMaxOpenConns, db.DefaultBusyTimeout, db.DefaultCheckpoint,
// jobs.DefaultShutdownGrace, claim.DefaultLease), named there and nowhere
// else, so that each has one value.
const (
	// MinLease is the shortest scheduler.lease: renewals every third of it
	// must survive a slow round trip or a GC pause without fencing a
	// healthy run.
	MinLease                = time.Second
	DefaultHistoryRetention = 7 * 24 * time.Hour
	DefaultJobTimeout       = time.Minute
	// MinDuplicateCheck bounds history.duplicate_check_interval.
	MinDuplicateCheck = time.Second
	// MaxHistoryRowsPerJob bounds history.max_rows_per_job.
	MaxHistoryRowsPerJob = math.MaxInt32
	// MaxPageCount is SQLite's own largest max_page_count.
	MaxPageCount = 4294967294
	// MaxJobs bounds the number of user jobs: each one is a goroutine per run
	// and a set of metric series.
	MaxJobs = 1000
	// MaxBusyTimeout is the longest busy_timeout SQLite can hold: a C int
	// of milliseconds.
	MaxBusyTimeout = math.MaxInt32 * time.Millisecond
)

// The checkpoint modes of database.checkpoint (db.CheckpointWorker and
// db.CheckpointExternal).
const (
	// CheckpointWorker: the worker checkpoints the WAL (the wal_checkpoint
	// built-in, at shutdown, and SQLite's automatic checkpoints).
	CheckpointWorker = db.CheckpointWorker
	// CheckpointExternal: another process, such as Litestream, owns
	// checkpointing, and the worker never checkpoints; the wal_checkpoint
	// built-in is disabled, and refused when enabled.
	CheckpointExternal = db.CheckpointExternal
)

// ErrCheckpointExternal is the error of a wal_checkpoint built-in that is
// not disabled under database.checkpoint: external.
var ErrCheckpointExternal = errors.New("must be false under database.checkpoint: external, where another process (Litestream) checkpoints the WAL")

// The built-in jobs, defined in jobs.BuiltinJobs.
const (
	Heartbeat     = jobs.Heartbeat
	WALCheckpoint = jobs.WALCheckpoint
	Optimize      = jobs.Optimize
	QuickCheck    = jobs.QuickCheck
	HistoryPrune  = jobs.HistoryPrune
)

// BuiltinNames lists the built-in jobs in a stable order.
var BuiltinNames = builtinNames()

func builtinNames() []string {
	names := make([]string, len(jobs.BuiltinJobs))
	for i, b := range jobs.BuiltinJobs {
		names[i] = b.Name
	}
	return names
}

// builtinDefault returns the production schedule and timeout of a built-in,
// and whether it runs at start.
func builtinDefault(name string) Job {
	for _, b := range jobs.BuiltinJobs {
		if b.Name == name {
			return Job{Spec: b.Spec, Timeout: b.Timeout, RunAtStart: b.RunAtStart}
		}
	}
	return Job{}
}

// builtinSection is the type the checker sees for builtin: a struct with a
// *FileJob field per built-in, tagged with its name, so that an unknown key
// is reported with the built-ins' names as any unknown field is. The file
// holds a map, decoded from the same tree.
var builtinSection = func() reflect.Type {
	fields := make([]reflect.StructField, len(jobs.BuiltinJobs))
	for i, b := range jobs.BuiltinJobs {
		fields[i] = reflect.StructField{
			Name: fmt.Sprintf("Job%d", i),
			Type: reflect.TypeFor[*FileJob](),
			Tag:  reflect.StructTag(fmt.Sprintf("yaml:%q", b.Name)),
		}
	}
	return reflect.StructOf(fields)
}()

// Config is a validated configuration, every field filled in by
// Validate: what the worker runs. Users never build one: package worker's
// own Config is written as a File and validated into one.
type Config struct {
	DBPath string // database.path; default db.DefaultPath; unused with DBURL
	// DBURL is database.url (or --db.url): a postgres:// URL. Set, the
	// worker uses PostgreSQL there instead of the SQLite file at DBPath, and
	// the SQLite-only settings and built-in jobs are not offered: Parse
	// leaves those jobs out, and worker.New refuses a Config built in Go
	// that enables one (set DBURL on a parsed config, or disable them).
	DBURL string
	// DBPasswordFile is database.password_file, with DBURL: the password
	// is its first line, read at each connect, so that it is never on the
	// command line; it wins over PGPASSWORD and PGPASSFILE.
	DBPasswordFile string
	// DBReplicaID is database.replica_id, with DBURL: the server tells the
	// replicas apart by application_name worker-<replica id>; default
	// <hostname>-<pid>.
	DBReplicaID   string
	MaxOpenConns  int            // database.max_open_conns, the pool bound; default db.DefaultMaxOpenConns
	BusyTimeout   time.Duration  // database.busy_timeout; default db.DefaultBusyTimeout
	MaxPageCount  int            // database.max_page_count, PRAGMA max_page_count on every connection; 0: SQLite's limit
	Checkpoint    string         // database.checkpoint, who checkpoints the WAL: CheckpointWorker or CheckpointExternal; default db.DefaultCheckpoint
	Location      *time.Location // scheduler.timezone of specs without CRON_TZ=; default time.Local
	ShutdownGrace time.Duration  // scheduler.shutdown_grace, how long runs may finish at shutdown; default jobs.DefaultShutdownGrace
	// Lease is scheduler.lease, with DBURL: how long a replica's claim on a
	// running tick holds without a renewal (renewed every third of it). A
	// dead replica's run is taken over this long after its last renewal;
	// a replica paused longer than this is fenced. Default claim.DefaultLease; 0
	// in a Config built in Go means the default.
	Lease            time.Duration
	HistoryRetention time.Duration // history.retention, how long history_prune keeps job_runs rows; default DefaultHistoryRetention
	// HistoryMaxRowsPerJob is history.max_rows_per_job: how many job_runs
	// rows history_prune keeps of each job, the newest, besides the
	// retention; 0, the default, caps nothing.
	HistoryMaxRowsPerJob int
	// DuplicateCheck is history.duplicate_check_interval: how often the
	// ticks with more than one success row are counted
	// (worker_job_duplicate_ticks); default jobs.DefaultDuplicateCheck.
	DuplicateCheck time.Duration
	Jobs           []Job // built-in jobs first, then user jobs, enabled or not
	// Source is the file Load read, "" otherwise; errors found later, when
	// the jobs are resolved against the registered Go jobs, name it.
	Source string
	// Empty is set when the document set nothing at all (an empty file,
	// or comments only): the defaults. A reload refuses it (see
	// worker.Reload); `jobs: []` says "no jobs" on purpose.
	Empty bool
	// GoNames is set by package worker on a Config built in Go: each job's
	// Field is its place in worker.Config.Jobs, and errors found later name
	// worker.JobConfig's fields rather than the file's keys.
	GoNames bool

	dbField string // the field or flag that set DBURL, for errors
}

// Job is one scheduled job of the config.
type Job struct {
	Name     string        // unique: lower case letters, digits and _
	Builtin  bool          // one of jobs.BuiltinJobs, under builtin:
	Spec     string        // the schedule as written; "" in a Go job's entry that keeps its own
	Schedule cron.Schedule // Spec parsed; nil when Spec is ""
	// Timeout is per run; default DefaultJobTimeout, a built-in's own, or 0
	// in a Go job's entry that keeps its own; negative, set by package
	// worker only, means no bound.
	Timeout time.Duration
	Enabled bool   // default true
	SQL     string // user jobs only: run in one transaction
	// OmitSuccessRows is record_successes: false (the default is true):
	// a successful run leaves no job_runs row; it is still counted in
	// worker_job_runs_total, and every other result is recorded. The zero
	// value records, so a Job built in Go records every run.
	OmitSuccessRows bool
	// CatchUp is catch_up, what happens to the ticks missed while the
	// worker was down or paused: jobs.CatchUpSkip (the default),
	// jobs.CatchUpOnce or jobs.CatchUpAll. It needs record_successes:
	// true, since the last tick is read from job_runs. "" in a Go job's
	// entry keeps the Go job's own.
	CatchUp jobs.CatchUp
	// CatchUpLimit is catch_up_limit, how many missed ticks catch_up: all
	// runs at most, the newest; 0 means jobs.DefaultCatchUpLimit (or the
	// Go job's own).
	CatchUpLimit int
	// Retries is retries, how many more attempts a run gets after a
	// retryable failure (see jobs.Retryable); 0 means none (or the Go
	// job's own).
	Retries int
	// RetryBackoff is retry_backoff, the wait before the first retry,
	// doubled for each next one; 0 means jobs.DefaultRetryBackoff (or the
	// Go job's own).
	RetryBackoff time.Duration
	// Jitter is jitter, the bound of the random delay of each scheduled
	// run, less than the schedule's interval; 0 means none (or the Go
	// job's own).
	Jitter time.Duration
	// DST is dst, the job's policy at daylight-saving changes:
	// schedule.DSTCron (crontab(5)'s, the default) or
	// schedule.DSTWallClock (robfig/cron's). "" is the default, or the Go
	// job's own in a Go job's entry.
	DST schedule.DST
	// Overlap is overlap, what happens to a run that comes while the
	// job's previous run is going: jobs.OverlapSkip (the default),
	// jobs.OverlapBufferOne or jobs.OverlapReplace. "" is the default, or
	// the Go job's own in a Go job's entry.
	Overlap jobs.Overlap
	// RunAtStart runs the job once when the worker starts too, besides its
	// schedule: the quick_check built-in does. Not a key of the file.
	RunAtStart bool
	// Go is set on an entry under jobs with no sql: it refers to a Go job
	// registered by name, and reschedules (Spec, "" to keep its own),
	// re-times (Timeout, 0 to keep its own) or disables it.
	Go bool
	// Field is where the job is in the file, such as "jobs[2]" or
	// "builtin.heartbeat", for errors found after Parse.
	Field string
}

// EnabledJobs returns the jobs that will be scheduled.
func (c *Config) EnabledJobs() []Job {
	var out []Job
	for _, j := range c.Jobs {
		if j.Enabled {
			out = append(out, j)
		}
	}
	return out
}

// File is the YAML document, as decoded and before it is validated.
// Durations are strings here so that a bad one is reported with its field's
// name. Package worker writes a Config built in Go in this form, so that
// Validate checks it as it checks a file.
type File struct {
	Database struct {
		Path         string `yaml:"path"`
		URL          string `yaml:"url"`
		PasswordFile string `yaml:"password_file"`
		ReplicaID    string `yaml:"replica_id"`
		MaxOpenConns *int   `yaml:"max_open_conns"`
		BusyTimeout  string `yaml:"busy_timeout"`
		MaxPageCount *int   `yaml:"max_page_count"`
		Checkpoint   string `yaml:"checkpoint"`
	} `yaml:"database"`
	Scheduler struct {
		Timezone      string `yaml:"timezone"`
		ShutdownGrace string `yaml:"shutdown_grace"`
		Lease         string `yaml:"lease"`
	} `yaml:"scheduler"`
	History struct {
		Retention      string `yaml:"retention"`
		MaxRowsPerJob  *int   `yaml:"max_rows_per_job"`
		DuplicateCheck string `yaml:"duplicate_check_interval"`
	} `yaml:"history"`
	Builtin map[string]*FileJob `yaml:"builtin"` // checked as builtinSection
	Jobs    []FileJob           `yaml:"jobs"`
}

// FileJob is an entry under builtin or jobs of a File.
type FileJob struct {
	Name            string `yaml:"name"`
	Spec            string `yaml:"schedule"`
	Timeout         string `yaml:"timeout"`
	Enabled         *bool  `yaml:"enabled"`
	SQL             string `yaml:"sql"`
	RecordSuccesses *bool  `yaml:"record_successes"`
	CatchUp         string `yaml:"catch_up"`
	CatchUpLimit    *int   `yaml:"catch_up_limit"`
	Retries         *int   `yaml:"retries"`
	RetryBackoff    string `yaml:"retry_backoff"`
	Jitter          string `yaml:"jitter"`
	DST             string `yaml:"dst"`
	Overlap         string `yaml:"overlap"`
}

// Default returns the embedded default configuration: the database at
// db.DefaultPath and every built-in job on its production schedule.
func Default() *Config {
	c, err := Parse(nil)
	if err != nil {
		panic(err) // the defaults are constants; a test keeps them valid
	}
	return c
}

// Overrides are the command line's settings over the file's, applied
// before it is validated, so that each error names the flag it is about.
// A field left "" keeps the file's.
type Overrides struct {
	DBPath         string // --db.path
	DBURL          string // --db.url
	DBPasswordFile string // --db.password-file
	DBReplicaID    string // --db.replica-id
}

// Postgres reports whether the configuration uses PostgreSQL (DBURL).
func (c *Config) Postgres() bool { return c.DBURL != "" }

// Database returns what the worker opens, for logs and display: the
// database file's path, or the URL with its password masked.
func (c *Config) Database() string {
	if c.DBURL != "" {
		return db.RedactURL(c.DBURL)
	}
	return c.DBPath
}

// ApplicationName returns the application_name of the worker's
// PostgreSQL connections, "" for SQLite.
func (c *Config) ApplicationName() string {
	if !c.Postgres() {
		return ""
	}
	return db.ApplicationName(c.DBReplicaID)
}

// Load reads and validates the file at path. It reads at most one byte
// more than MaxSize, so that a huge file (or /dev/zero) is refused without
// being read.
func Load(path string) (*Config, error) { return LoadWith(path, Overrides{}) }

// LoadWith is Load with the command line's overrides.
func LoadWith(path string, o Overrides) (*Config, error) {
	// A FIFO or a device would block the open or never end (a reload
	// stuck for good): only a regular file is read, and a byte past MaxSize.
	b, err := regularfile.Read(path, MaxSize+1)
	if err != nil {
		return nil, &ReadError{Path: path, Err: err}
	}
	c, err := ParseWith(b, o)
	if err != nil {
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}
	c.Source = path
	return c, nil
}

// ReadError is LoadWith's error when the file cannot be read: missing,
// unreadable, a directory, a FIFO, a symbolic link loop. Its message names
// the file and says why, in one form whatever the cause.
type ReadError struct {
	Path string
	Err  error // as the system said it
}

func (e *ReadError) Error() string {
	return fmt.Sprintf("cannot read config file %s: %s", e.Path, e.Reason())
}
func (e *ReadError) Unwrap() error { return e.Err }

// Reason is why the file cannot be read, without the path that
// os.PathError repeats ("no such file or directory", "not a regular file:
// a directory", "too many levels of symbolic links").
func (e *ReadError) Reason() string {
	var pe *fs.PathError
	if errors.As(e.Err, &pe) {
		return pe.Err.Error()
	}
	return e.Err.Error()
}

// Parse validates a YAML document; unknown keys are errors. An empty
// document yields the defaults. Every error is one line that starts with
// the field it is about, as in `jobs[2].schedule: ...`, or with `config:`
// and the line and column when the YAML itself is malformed.
func Parse(b []byte) (*Config, error) { return ParseWith(b, Overrides{}) }

// ParseWith is Parse with the command line's overrides.
func ParseWith(b []byte, o Overrides) (*Config, error) {
	var f File
	if err := decode(b, &f); err != nil {
		return nil, err
	}
	c, err := f.Validate(o)
	if err != nil {
		return nil, err
	}
	c.Empty = reflect.ValueOf(f).IsZero()
	return c, nil
}

var jobNameRE = regexp.MustCompile(`^[a-z][a-z0-9_]{0,62}$`)

// ErrNoGoJob is the error of an entry under jobs with no sql whose name is
// no registered Go job; its message is the one a missing sql always had.
var ErrNoGoJob = errors.New("must not be empty")

// CheckName returns an error when name is not a valid job name: lower case
// letters, digits and _, starting with a letter, at most 63 characters.
func CheckName(name string) error {
	if name == "" {
		return errors.New("must not be empty")
	}
	if !jobNameRE.MatchString(name) {
		return fmt.Errorf("%q must be lower case letters, digits and _, starting with a letter, at most 63 characters", name)
	}
	return nil
}

// GoJobError returns the error of j, an entry with no sql, when no Go job
// of its name is registered: it names the field, and the file when c came
// from one.
func (c *Config) GoJobError(j Job) error {
	err := fmt.Errorf("%s: %w", c.JobField(j, "sql"), ErrNoGoJob)
	if c.Source != "" {
		err = fmt.Errorf("config file %s: %w", c.Source, err)
	}
	return err
}

// Validate checks f with the overrides o and returns the Config it says,
// every default filled in. Every error is one line that starts with the
// field it is about, as Parse's.
func (f *File) Validate(o Overrides) (*Config, error) {
	c := &Config{
		DBPath:       db.DefaultPath,
		MaxOpenConns: db.DefaultMaxOpenConns,
		Checkpoint:   db.DefaultCheckpoint,
		Location:     time.Local,
	}
	for _, section := range []func(*Config) error{
		func(c *Config) error { return f.database(c, o) },
		f.scheduler, f.history, f.builtins, f.userJobs,
	} {
		if err := section(c); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// database reads the database: section, with o's overrides, into c.
func (f *File) database(c *Config, o Overrides) error {
	var err error
	pathField, path := "database.path", f.Database.Path
	if o.DBPath != "" {
		pathField, path = "--db.path", o.DBPath
	}
	if path != "" {
		c.DBPath = path
	}
	if strings.ContainsAny(c.DBPath, "?#\x00") {
		return fmt.Errorf("%s: must not contain '?', '#' or NUL: %q", pathField, c.DBPath)
	}
	if strings.HasSuffix(c.DBPath, "/") {
		return fmt.Errorf("%s: is a directory, want a file path: %q", pathField, c.DBPath)
	}
	if err := f.validatePostgres(c, o, pathField, path); err != nil {
		return err
	}
	if f.Database.MaxOpenConns != nil {
		if n := *f.Database.MaxOpenConns; n < 1 || n > 1024 {
			return fmt.Errorf("database.max_open_conns: must be between 1 and 1024, got %d", n)
		}
		c.MaxOpenConns = *f.Database.MaxOpenConns
	}
	if f.Database.MaxPageCount != nil && c.Postgres() {
		return fmt.Errorf("database.max_page_count: is SQLite's; not offered with %s", c.dbField)
	}
	if f.Database.MaxPageCount != nil {
		if n := *f.Database.MaxPageCount; n < 0 || n > MaxPageCount {
			return fmt.Errorf("database.max_page_count: must be between 0 (no limit) and %d, got %d", MaxPageCount, n)
		}
		c.MaxPageCount = *f.Database.MaxPageCount
	}
	switch m := f.Database.Checkpoint; {
	case m != "" && c.Postgres():
		return fmt.Errorf("database.checkpoint: is SQLite's; not offered with %s", c.dbField)
	case m == "":
	case m == CheckpointWorker || m == CheckpointExternal:
		c.Checkpoint = m
	default:
		return fmt.Errorf("database.checkpoint: must be %s or %s, got %q", CheckpointWorker, CheckpointExternal, m)
	}
	if f.Database.BusyTimeout != "" && c.Postgres() {
		return fmt.Errorf("database.busy_timeout: is SQLite's; not offered with %s (set lock_timeout in the URL instead)", c.dbField)
	}
	if c.BusyTimeout, err = duration("database.busy_timeout", f.Database.BusyTimeout, db.DefaultBusyTimeout, true); err != nil {
		return err
	}
	if err := milliseconds("database.busy_timeout", c.BusyTimeout, MaxBusyTimeout,
		"SQLite's busy_timeout is a 32-bit count of milliseconds"); err != nil {
		return err
	}
	return nil
}

// scheduler reads the scheduler: section into c.
func (f *File) scheduler(c *Config) error {
	var err error
	if tz := f.Scheduler.Timezone; tz != "" {
		if c.Location, err = time.LoadLocation(tz); err != nil || strings.ContainsAny(tz, " \t") {
			return fmt.Errorf("scheduler.timezone: unknown time zone %q", tz)
		}
	}
	if c.ShutdownGrace, err = duration("scheduler.shutdown_grace", f.Scheduler.ShutdownGrace, jobs.DefaultShutdownGrace, true); err != nil {
		return err
	}
	switch {
	case f.Scheduler.Lease != "" && !c.Postgres():
		return fmt.Errorf("scheduler.lease: is for replicas on PostgreSQL; not offered on SQLite, where one worker runs every tick (set database.url, or remove it)")
	case c.Postgres():
		if c.Lease, err = duration("scheduler.lease", f.Scheduler.Lease, claim.DefaultLease, true); err != nil {
			return err
		}
		if c.Lease < MinLease {
			return fmt.Errorf("scheduler.lease: must be at least %s, got %s", MinLease, c.Lease)
		}
	}
	return nil
}

// builtins reads the builtin: section into c's jobs.
func (f *File) builtins(c *Config) error {
	for i, name := range BuiltinNames {
		fj := f.Builtin[name]
		if jobs.BuiltinJobs[i].SQLiteOnly && c.Postgres() {
			if fj != nil && (fj.Enabled == nil || *fj.Enabled) {
				return fmt.Errorf("builtin.%s: is SQLite's; not offered with %s (remove it)", name, c.dbField)
			}
			continue // not offered: not scheduled, not listed
		}
		if name == WALCheckpoint && c.Checkpoint == CheckpointExternal && fj != nil && (fj.Enabled == nil || *fj.Enabled) {
			return fmt.Errorf("builtin.%s.enabled: %w", name, ErrCheckpointExternal)
		}
		j, err := c.job("builtin."+name, name, fj, builtinDefault(name))
		if err != nil {
			return err
		}
		if name == WALCheckpoint && c.Checkpoint == CheckpointExternal {
			j.Enabled = false
		}
		j.Builtin = true
		j.Field = "builtin." + name
		c.Jobs = append(c.Jobs, j)
	}

	return nil
}

// userJobs reads the jobs: section into c's jobs, after the built-ins.
func (f *File) userJobs(c *Config) error {
	if len(f.Jobs) > MaxJobs {
		return fmt.Errorf("jobs: at most %d jobs, got %d", MaxJobs, len(f.Jobs))
	}
	var stmts *sqlstmt.Parser // opened for the first user job
	defer func() {
		if stmts != nil {
			stmts.Close()
		}
	}()
	seen := make(map[string]string)
	for _, name := range BuiltinNames {
		seen[name] = "builtin." + name
	}
	for i := range f.Jobs {
		fj := &f.Jobs[i]
		field := fmt.Sprintf("jobs[%d]", i)
		switch {
		case fj.Name == "":
			return fmt.Errorf("%s.name: must not be empty", field)
		case !jobNameRE.MatchString(fj.Name):
			return fmt.Errorf("%s.name: %q must be lower case letters, digits and _, starting with a letter, at most 63 characters", field, fj.Name)
		case seen[fj.Name] != "":
			return fmt.Errorf("%s.name: duplicate job name %q (also %s)", field, fj.Name, seen[fj.Name])
		}
		seen[fj.Name] = field
		if strings.TrimSpace(fj.SQL) == "" {
			// A Go job's entry: resolved against the registered Go jobs
			// (see ErrNoGoJob); its schedule and timeout may be left out.
			j, err := c.job(field, fj.Name, fj, Job{})
			if err != nil {
				return err
			}
			j.Go, j.Field = true, field
			c.Jobs = append(c.Jobs, j)
			continue
		}
		if fj.Spec == "" {
			return fmt.Errorf("%s.schedule: must not be empty", field)
		}
		j, err := c.job(field, fj.Name, fj, Job{Timeout: DefaultJobTimeout})
		if err != nil {
			return err
		}
		switch {
		case c.Postgres():
			if err := checkPostgresSQL(field+".sql", fj.SQL); err != nil {
				return err
			}
		default:
			if stmts == nil {
				if stmts, err = sqlstmt.Open(); err != nil {
					return fmt.Errorf("%s.sql: cannot check: %w", field, err)
				}
			}
			if err := checkSQL(stmts, field+".sql", fj.SQL); err != nil {
				return err
			}
		}
		j.SQL = fj.SQL
		j.Field = field
		c.Jobs = append(c.Jobs, j)
	}
	return nil
}

// validatePostgres takes the URL, the password file and the replica id
// from the file and o; path is the SQLite path set explicitly, in the field
// pathField, or "".
func (f *File) validatePostgres(c *Config, o Overrides, pathField, path string) error {
	urlField, u := "database.url", f.Database.URL
	if o.DBURL != "" {
		urlField, u = "--db.url", o.DBURL
	}
	pwField, pw := "database.password_file", f.Database.PasswordFile
	if o.DBPasswordFile != "" {
		pwField, pw = "--db.password-file", o.DBPasswordFile
	}
	idField, id := "database.replica_id", f.Database.ReplicaID
	if o.DBReplicaID != "" {
		idField, id = "--db.replica-id", o.DBReplicaID
	}
	if u == "" {
		for _, s := range []struct{ field, v string }{{pwField, pw}, {idField, id}} {
			if s.v != "" {
				return fmt.Errorf("%s: is PostgreSQL's; set database.url or --db.url too", s.field)
			}
		}
		return nil
	}
	if path != "" {
		return fmt.Errorf("%s: cannot be set together with %s: the worker uses PostgreSQL (url) or an SQLite file (path), not both", urlField, pathField)
	}
	if err := db.CheckURL(u); err != nil {
		return fmt.Errorf("%s: %w", urlField, err)
	}
	c.DBURL, c.dbField = u, urlField
	if pw != "" {
		if slices.Contains(db.URLSecrets(u), "password") {
			return fmt.Errorf("%s: %s has a password too; give it in one place", pwField, urlField)
		}
		if _, err := db.ReadPasswordFile(pw); err != nil {
			return fmt.Errorf("%s: %w", pwField, err)
		}
		c.DBPasswordFile = pw
	}
	if id == "" {
		id = db.DefaultReplicaID()
	} else if err := db.CheckReplicaID(id); err != nil {
		return fmt.Errorf("%s: %w", idField, err)
	}
	c.DBReplicaID = id
	return nil
}

// history reads the history: section into c.
func (f *File) history(c *Config) error {
	var err error
	if c.HistoryRetention, err = duration("history.retention", f.History.Retention, DefaultHistoryRetention, false); err != nil {
		return err
	}
	if err := milliseconds("history.retention", c.HistoryRetention, 0, ""); err != nil {
		return err
	}
	if f.History.MaxRowsPerJob != nil {
		if n := *f.History.MaxRowsPerJob; n < 0 || n > MaxHistoryRowsPerJob {
			return fmt.Errorf("history.max_rows_per_job: must be between 0 (no cap) and %d, got %d", MaxHistoryRowsPerJob, n)
		}
		c.HistoryMaxRowsPerJob = *f.History.MaxRowsPerJob
	}
	const field = "history.duplicate_check_interval"
	if c.DuplicateCheck, err = duration(field, f.History.DuplicateCheck, jobs.DefaultDuplicateCheck, true); err != nil {
		return err
	}
	if c.DuplicateCheck < MinDuplicateCheck {
		return fmt.Errorf("%s: must be at least %s, got %s", field, MinDuplicateCheck, c.DuplicateCheck)
	}
	return nil
}

// job merges a job's settings from the file over its defaults.
func (c *Config) job(field, name string, fj *FileJob, def Job) (Job, error) {
	j := def
	j.Name = name
	j.Enabled = true
	if fj != nil {
		if fj.Name != "" && fj.Name != name {
			return Job{}, fmt.Errorf("%s.name: built-in jobs cannot be renamed", field)
		}
		if fj.SQL != "" && def.Spec != "" {
			return Job{}, fmt.Errorf("%s.sql: built-in jobs take no SQL; add a job under jobs instead", field)
		}
		if fj.Spec != "" {
			j.Spec = fj.Spec
		}
		if fj.Enabled != nil {
			j.Enabled = *fj.Enabled
		}
		if fj.RecordSuccesses != nil {
			j.OmitSuccessRows = !*fj.RecordSuccesses
		}
		var err error
		if j.Timeout, err = duration(field+".timeout", fj.Timeout, def.Timeout, true); err != nil {
			return Job{}, err
		}
		if err := fj.reliability(field, &j); err != nil {
			return Job{}, err
		}
	}
	if j.Spec == "" { // a Go job's entry that keeps its schedule
		return j, nil
	}
	s, err := schedule.ParseDST(j.Spec, j.DST)
	if errors.Is(err, schedule.ErrNeverFires) {
		return Job{}, fmt.Errorf("%s.schedule: %q never fires", field, j.Spec)
	}
	if err != nil {
		return Job{}, fmt.Errorf("%s.schedule: invalid schedule %q: %v", field, j.Spec, err)
	}
	j.Schedule = s
	if err := jobs.CheckJitter(j.Jitter, s); err != nil {
		return Job{}, fmt.Errorf("%s.jitter: %w", field, err)
	}
	return j, nil
}

// milliseconds refuses a duration that is not a whole number of
// milliseconds, the unit the field is stored in: the driver passes
// busy_timeout to SQLite as whole milliseconds (1ns would become 0, no
// waiting at all), and job_runs keeps times to the millisecond. Rounding
// would run something other than what the file says, so the file is refused.
// max, when not 0, is the largest value the unit can hold; why says why.
func milliseconds(field string, d, max time.Duration, why string) error {
	switch {
	case d > 0 && d < time.Millisecond:
		return fmt.Errorf("%s: must be at least 1ms, got %s", field, d)
	case d%time.Millisecond != 0:
		return fmt.Errorf("%s: must be a whole number of milliseconds, got %s", field, d)
	case max > 0 && d > max:
		return fmt.Errorf("%s: must be at most %s (%s), got %s", field, max, why, d)
	}
	return nil
}

// duration parses a field's duration; "" means the default.
func duration(field, s string, def time.Duration, positive bool) (time.Duration, error) {
	if s == "" {
		return def, nil
	}
	d, err := schedule.ParseDuration(s)
	if errors.Is(err, schedule.ErrDurationTooLong) {
		return 0, fmt.Errorf("%s: duration %q is %w", field, s, err)
	}
	if err != nil {
		return 0, fmt.Errorf("%s: invalid duration %q: want a number with a unit, such as 30s or 5m", field, s)
	}
	if d < 0 || (positive && d == 0) {
		return 0, fmt.Errorf("%s: must be positive, got %s", field, s)
	}
	return d, nil
}
