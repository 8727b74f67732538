package worker

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/sqlworker/worker/internal/config"
	"github.com/sqlworker/worker/internal/jobs"
	"github.com/sqlworker/worker/internal/schedule"
)

// Func is the body of a Go job. It gets the run's context, done at the
// job's timeout or at shutdown, and the worker's one shared *sql.DB; it
// returns the rows it changed, recorded in job_runs.rows_affected. Use the
// *Context methods of db, so that a done context interrupts SQLite, and
// never open a handle of its own (that is the PERF-408 leak). A panic is
// recovered and recorded as the run's result "panic".
type Func func(ctx context.Context, db *sql.DB) (rowsAffected int64, err error)

// JobOption is an option of Register. ApplyJob changes the settings of
// the Go job being registered: a JobConfig with Register's Name and Spec,
// and, in its other fields, the zero values (the defaults) or what the
// options before it set. An error refuses the job: Register returns it,
// naming the job. After the options, Register checks the JobConfig as New
// checks a config entry. Write one with NewJobOption, or implement the
// interface.
type JobOption interface {
	ApplyJob(*JobConfig) error
}

// NewJobOption returns a JobOption named name that applies f; Register
// prefixes f's error with the name, as in `WithRetries: must be between 0
// and 10, got -1`.
func NewJobOption(name string, f func(*JobConfig) error) JobOption {
	return jobOption{name, f}
}

type jobOption struct {
	name string
	f    func(*JobConfig) error
}

func (o jobOption) ApplyJob(j *JobConfig) error {
	if err := o.f(j); err != nil {
		return fmt.Errorf("%s: %w", o.name, err)
	}
	return nil
}

// WithTimeout bounds each run of the job by d instead of DefaultJobTimeout;
// 0 or less means no bound but shutdown. A config entry's timeout
// overrides it.
func WithTimeout(d time.Duration) JobOption {
	return NewJobOption("WithTimeout", func(j *JobConfig) error {
		j.Timeout = d
		if d <= 0 {
			j.Timeout = -1
		}
		return nil
	})
}

// CatchUp is a Go job's policy for the ticks it missed while the worker was
// down or paused (WithCatchUp); see the README's "Missed ticks".
type CatchUp = jobs.CatchUp

// The catch-up policies.
const (
	CatchUpSkip = jobs.CatchUpSkip // run none of the ticks missed while down: the default
	CatchUpOnce = jobs.CatchUpOnce // run the newest missed tick
	CatchUpAll  = jobs.CatchUpAll  // run the newest missed ticks, up to a limit, oldest first
)

// Bounds and defaults of the job options.
const (
	DefaultCatchUpLimit = jobs.DefaultCatchUpLimit // of WithCatchUp(CatchUpAll, 0)
	MaxCatchUpLimit     = jobs.MaxCatchUpLimit
	MaxRetries          = jobs.MaxRetries
	DefaultRetryBackoff = jobs.DefaultRetryBackoff // of WithRetries(n, 0)
	MaxRetryBackoff     = jobs.MaxRetryBackoff     // also the cap of each doubled wait
)

// WithCatchUp sets what happens to the ticks the job missed while the
// worker was down or paused, found from job_runs at Start: CatchUpSkip (the
// default), CatchUpOnce, or CatchUpAll, which runs the newest limit of them
// (0 means DefaultCatchUpLimit). A config entry's catch_up overrides it.
func WithCatchUp(p CatchUp, limit int) JobOption {
	return NewJobOption("WithCatchUp", func(j *JobConfig) error {
		if err := jobs.CheckCatchUp(p); err != nil {
			return err
		}
		if limit != 0 {
			if err := jobs.CheckCatchUpLimit(limit); err != nil {
				return fmt.Errorf("limit %w", err)
			}
		}
		j.CatchUp, j.CatchUpLimit = p, limit
		return nil
	})
}

// WithRetries gives each run n more attempts after a retryable failure
// (a timeout, SQLITE_BUSY or SQLITE_LOCKED, or an error wrapped with
// Retryable), waiting backoff before the first (0 means
// DefaultRetryBackoff) and twice as long before each next one, at most
// MaxRetryBackoff. A retry whose wait would end after the job's next tick
// is not started. A config entry's retries and retry_backoff override it.
func WithRetries(n int, backoff time.Duration) JobOption {
	return NewJobOption("WithRetries", func(j *JobConfig) error {
		if err := jobs.CheckRetries(n); err != nil {
			return err
		}
		if backoff != 0 {
			if err := jobs.CheckRetryBackoff(backoff); err != nil {
				return fmt.Errorf("backoff %w", err)
			}
		}
		j.Retries, j.RetryBackoff = n, backoff
		return nil
	})
}

// WithJitter delays each scheduled run by a random duration in [0, d);
// d must be less than the schedule's interval. A config entry's jitter
// overrides it.
func WithJitter(d time.Duration) JobOption {
	return NewJobOption("WithJitter", func(j *JobConfig) error {
		s, err := schedule.ParseDST(j.Spec, j.DST)
		if err != nil {
			return err
		}
		if err := jobs.CheckJitter(d, s); err != nil {
			return err
		}
		j.Jitter = d
		return nil
	})
}

// DST is a job's policy at daylight-saving changes (WithDST; a config
// entry's dst); see the README's "Daylight saving time".
type DST = schedule.DST

// The daylight-saving policies.
const (
	// DSTCron is crontab(5)'s rule, the default: a fixed-time tick in a
	// skipped local hour runs once right after the change, one in a
	// repeated hour runs once; a job with '*' in its minute or hour runs
	// by the new time.
	DSTCron = schedule.DSTCron
	// DSTWallClock is robfig/cron's: a tick runs whenever the local clock
	// shows its time, so never in a skipped hour and twice in a repeated one.
	DSTWallClock = schedule.DSTWallClock
)

// WithDST sets the job's policy at daylight-saving changes: DSTCron (the
// default) or DSTWallClock. A config entry's dst overrides it.
func WithDST(p DST) JobOption {
	return NewJobOption("WithDST", func(j *JobConfig) error {
		if err := schedule.CheckDST(p); err != nil {
			return err
		}
		j.DST = p
		return nil
	})
}

// DSTChange is a tick of a job that a daylight-saving change skips or
// repeats, and when the job's policy runs it; its String is one line.
type DSTChange = schedule.Change

// DSTChanges returns up to max ticks of the job in loc (the scheduler's
// time zone; a CRON_TZ= of the spec wins), after from and before until,
// that a daylight-saving change skips or repeats, and when each runs. An
// @every schedule has none.
func (j JobInfo) DSTChanges(loc *time.Location, from, until time.Time, max int) []DSTChange {
	if j.schedule == nil {
		return nil
	}
	return schedule.Changes(j.schedule, loc, from, until, max)
}

// Next returns the job's first tick after t, by its Spec and DST policy,
// in t's location unless the spec has a CRON_TZ=; the zero time when
// the spec never fires.
func (j JobInfo) Next(t time.Time) time.Time {
	if j.schedule == nil {
		return time.Time{}
	}
	return j.schedule.Next(t)
}

// Retryable wraps err, returned by a Go job, so that WithRetries retries
// it: for a failure that can pass, such as a service that is down. It
// returns nil for nil.
func Retryable(err error) error { return jobs.MarkRetryable(err) }

// goJob is a registered Go job: its settings, as its options left them,
// and its schedule, Spec parsed with its DST policy.
type goJob struct {
	cfg      JobConfig
	schedule cron.Schedule
	fn       Func
}

// timeout is the bound of the job's runs: DefaultJobTimeout unless
// WithTimeout said otherwise, 0 for none.
func (g goJob) timeout() time.Duration {
	switch {
	case g.cfg.Timeout == 0:
		return DefaultJobTimeout
	case g.cfg.Timeout < 0:
		return 0
	}
	return g.cfg.Timeout
}

// Job kinds, as JobInfo.Kind says them.
const (
	KindBuiltin = "builtin" // one of the worker's own jobs (heartbeat, wal_checkpoint, ...)
	KindSQL     = "sql"     // a job of the config file with SQL
	KindGo      = "go"      // a Go job given to Register
)

// JobInfo is a job as the worker will run it: the config and the
// registered Go jobs resolved.
type JobInfo struct {
	Name    string
	Kind    string        // KindBuiltin, KindSQL or KindGo
	Spec    string        // the schedule as written; see Next
	Timeout time.Duration // per run; 0 means none
	Enabled bool

	// CatchUp is the policy for ticks missed while the worker was down
	// or paused; CatchUpLimit bounds what CatchUpAll runs (0: the
	// default, DefaultCatchUpLimit).
	CatchUp      CatchUp
	CatchUpLimit int
	// Retries is how many more attempts a run gets after a retryable
	// failure, waiting RetryBackoff (0: DefaultRetryBackoff) before the
	// first, doubled for each next one.
	Retries      int
	RetryBackoff time.Duration
	// Jitter bounds the random delay of each scheduled run; 0 means none.
	Jitter time.Duration
	// DST is the policy at daylight-saving changes, DSTCron or
	// DSTWallClock, that Next follows.
	DST DST
	// Overlap is what happens to a run that comes while the job's
	// previous run is going: OverlapSkip, OverlapBufferOne or
	// OverlapReplace.
	Overlap Overlap

	schedule        cron.Schedule // Spec parsed with DST
	fn              jobs.Func
	runAtStart      bool   // the config's RunAtStart
	omitSuccessRows bool   // the config's OmitSuccessRows (record_successes: false)
	perReplica      bool   // a built-in that runs on every replica (jobs.PerReplica)
	source          string // a SQL job's SQL, which Reload compares
}

// Jobs returns every job the worker would run, disabled ones included: the
// built-in jobs, the SQL jobs and the Go jobs, each with the config's
// settings over its own. It returns the error Start would for a config
// entry with no sql whose name is no registered Go job (ErrNoGoJob).
func (w *Worker) Jobs() ([]JobInfo, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.planLocked()
}

// planLocked resolves the config's jobs and the registered Go jobs.
func (w *Worker) planLocked() ([]JobInfo, error) { return w.plan(w.cfg) }

// plan resolves the jobs of cfg and the registered Go jobs; called with mu
// held.
func (w *Worker) plan(cfg *config.Config) ([]JobInfo, error) {
	byName := make(map[string]goJob, len(w.goJobs))
	for _, g := range w.goJobs {
		byName[g.cfg.Name] = g
	}
	var out []JobInfo
	for _, j := range cfg.Jobs {
		info := JobInfo{Name: j.Name, Spec: j.Spec, schedule: j.Schedule, Timeout: max(0, j.Timeout), Enabled: j.Enabled,
			CatchUp: j.CatchUp, CatchUpLimit: j.CatchUpLimit, Retries: j.Retries, RetryBackoff: j.RetryBackoff, Jitter: j.Jitter,
			DST: j.DST, Overlap: j.Overlap, runAtStart: j.RunAtStart, omitSuccessRows: j.OmitSuccessRows}
		switch {
		case j.Builtin:
			fn, err := w.builtins.Func(j.Name)
			if err != nil {
				return nil, err
			}
			info.Kind, info.fn, info.perReplica = KindBuiltin, fn, jobs.PerReplica(j.Name)
		case !j.Go:
			info.Kind, info.fn, info.source = KindSQL, jobs.SQLFunc(j.SQL), j.SQL
		default:
			g, ok := byName[j.Name]
			if !ok {
				return nil, cfg.GoJobError(j)
			}
			delete(byName, j.Name)
			if err := info.keepGoJob(g, j, cfg); err != nil {
				return nil, err
			}
		}
		info.CatchUp = cmp.Or(info.CatchUp, CatchUpSkip)
		info.DST = cmp.Or(info.DST, DSTCron)
		info.Overlap = cmp.Or(info.Overlap, OverlapSkip)
		out = append(out, info)
	}
	for _, g := range w.goJobs {
		if _, ok := byName[g.cfg.Name]; ok { // no entry in the config
			c := g.cfg
			out = append(out, JobInfo{Name: c.Name, Kind: KindGo, Spec: c.Spec, schedule: g.schedule,
				Timeout: g.timeout(), Enabled: !c.Disabled, fn: jobs.Func(g.fn), DST: cmp.Or(c.DST, DSTCron),
				CatchUp: cmp.Or(c.CatchUp, CatchUpSkip), CatchUpLimit: c.CatchUpLimit, Retries: c.Retries, RetryBackoff: c.RetryBackoff,
				Jitter: c.Jitter, Overlap: cmp.Or(c.Overlap, OverlapSkip), omitSuccessRows: c.OmitSuccessRows})
		}
	}
	return out, nil
}

// keepGoJob resolves the config entry j of the Go job g: the settings the
// entry leaves out are the Go job's own, and the jitter and catch-up are
// checked against what the entry ends up with, naming the entry's field.
func (info *JobInfo) keepGoJob(g goJob, j config.Job, cfg *config.Config) error {
	c := g.cfg
	info.Kind, info.fn = KindGo, jobs.Func(g.fn)
	if j.Schedule == nil {
		info.Spec, info.schedule = c.Spec, g.schedule
		info.DST = cmp.Or(c.DST, DSTCron)
		if j.DST != "" && j.DST != info.DST { // the entry's dst over the Go job's own schedule
			info.DST = j.DST
			var err error
			if info.schedule, err = schedule.ParseDST(c.Spec, j.DST); err != nil {
				return fmt.Errorf("%s: %w", cfg.JobField(j, "dst"), err)
			}
		}
	}
	switch {
	case j.Timeout == 0:
		info.Timeout = g.timeout()
	case j.Timeout < 0:
		info.Timeout = 0
	}
	info.CatchUp = cmp.Or(info.CatchUp, c.CatchUp)
	info.CatchUpLimit = cmp.Or(info.CatchUpLimit, c.CatchUpLimit)
	info.Retries = cmp.Or(info.Retries, c.Retries)
	info.RetryBackoff = cmp.Or(info.RetryBackoff, c.RetryBackoff)
	info.Jitter = cmp.Or(info.Jitter, c.Jitter)
	info.Overlap = cmp.Or(info.Overlap, c.Overlap)
	info.omitSuccessRows = info.omitSuccessRows || c.OmitSuccessRows
	err := jobs.CheckJitter(info.Jitter, info.schedule)
	if err == nil && info.CatchUp != CatchUpSkip && info.CatchUp != "" && info.omitSuccessRows {
		return fmt.Errorf("%s: %s needs record_successes: true: the last tick is read from job_runs, which keeps no successes under record_successes: false", cfg.JobField(j, "catch_up"), info.CatchUp)
	}
	if err != nil {
		err = fmt.Errorf("%s: %w", cfg.JobField(j, "jitter"), err)
		if cfg.Source != "" {
			err = fmt.Errorf("config file %s: %w", cfg.Source, err)
		}
	}
	return err
}
