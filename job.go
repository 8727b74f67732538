package worker

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/robfig/cron/v3"

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

// JobOption sets an option of a Go job in Register.
type JobOption func(*goJob)

// WithTimeout bounds each run of the job by d instead of DefaultJobTimeout;
// 0 means no bound but shutdown. A config entry's timeout overrides it.
func WithTimeout(d time.Duration) JobOption {
	return func(g *goJob) { g.timeout = max(0, d) }
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
	return func(g *goJob) {
		switch {
		case jobs.CheckCatchUp(p) != nil:
			g.err = fmt.Errorf("WithCatchUp: %w", jobs.CheckCatchUp(p))
		case limit != 0 && jobs.CheckCatchUpLimit(limit) != nil:
			g.err = fmt.Errorf("WithCatchUp: limit %w", jobs.CheckCatchUpLimit(limit))
		default:
			g.policy.catchUp, g.policy.catchUpLimit = p, limit
		}
	}
}

// WithRetries gives each run n more attempts after a retryable failure
// (a timeout, SQLITE_BUSY or SQLITE_LOCKED, or an error wrapped with
// Retryable), waiting backoff before the first (0 means
// DefaultRetryBackoff) and twice as long before each next one, at most
// MaxRetryBackoff. A retry whose wait would end after the job's next tick
// is not started. A config entry's retries and retry_backoff override it.
func WithRetries(n int, backoff time.Duration) JobOption {
	return func(g *goJob) {
		switch {
		case jobs.CheckRetries(n) != nil:
			g.err = fmt.Errorf("WithRetries: %w", jobs.CheckRetries(n))
		case backoff != 0 && jobs.CheckRetryBackoff(backoff) != nil:
			g.err = fmt.Errorf("WithRetries: backoff %w", jobs.CheckRetryBackoff(backoff))
		default:
			g.policy.retries, g.policy.retryBackoff = n, backoff
		}
	}
}

// WithJitter delays each scheduled run by a random duration in [0, d);
// d must be less than the schedule's interval. A config entry's jitter
// overrides it.
func WithJitter(d time.Duration) JobOption {
	return func(g *goJob) {
		if err := jobs.CheckJitter(d, g.schedule); err != nil {
			g.err = fmt.Errorf("WithJitter: %w", err)
			return
		}
		g.policy.jitter = d
	}
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
	return func(g *goJob) {
		s, err := schedule.ParseDST(g.spec, p)
		if err != nil {
			g.err = fmt.Errorf("WithDST: %w", err)
			return
		}
		g.schedule, g.dst = s, p
	}
}

// DSTChange is a tick of a job that a daylight-saving change skips or
// repeats, and when the job's policy runs it; its String is one line.
type DSTChange = schedule.Change

// DSTChanges returns up to max ticks of the job in loc (the scheduler's
// time zone; a CRON_TZ= of the spec wins), after from and before until,
// that a daylight-saving change skips or repeats, and when each runs. An
// @every schedule has none.
func (j JobInfo) DSTChanges(loc *time.Location, from, until time.Time, max int) []DSTChange {
	if j.Schedule == nil {
		return nil
	}
	return schedule.Changes(j.Schedule, loc, from, until, max)
}

// Retryable wraps err, returned by a Go job, so that WithRetries retries
// it: for a failure that can pass, such as a service that is down. It
// returns nil for nil.
func Retryable(err error) error { return jobs.MarkRetryable(err) }

// goJob is a registered Go job.
type goJob struct {
	name     string
	spec     string
	schedule cron.Schedule
	timeout  time.Duration
	fn       Func
	policy   policy
	dst      DST   // of WithDST; schedule is parsed with it
	err      error // of an option with a bad value, returned by Register
}

// policy is a job's catch-up, retry and jitter settings.
type policy struct {
	catchUp      CatchUp
	catchUpLimit int
	retries      int
	retryBackoff time.Duration
	jitter       time.Duration
	overlap      Overlap
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
	Name     string
	Kind     string        // KindBuiltin, KindSQL or KindGo
	Spec     string        // the schedule as written
	Schedule cron.Schedule // Spec parsed
	Timeout  time.Duration // per run; 0 means none
	Enabled  bool

	// CatchUp is the policy for ticks missed while the worker was down
	// or paused; CatchUpLimit bounds what CatchUpAll runs (0: the
	// default, jobs.DefaultCatchUpLimit).
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
	// DSTWallClock, that Schedule follows.
	DST DST
	// Overlap is what happens to a run that comes while the job's
	// previous run is going: OverlapSkip, OverlapBufferOne or
	// OverlapReplace.
	Overlap Overlap

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
func (w *Worker) plan(cfg *Config) ([]JobInfo, error) {
	byName := make(map[string]goJob, len(w.goJobs))
	for _, g := range w.goJobs {
		byName[g.name] = g
	}
	var out []JobInfo
	inConfig := make(map[string]bool)
	for _, j := range cfg.Jobs {
		info := JobInfo{Name: j.Name, Spec: j.Spec, Schedule: j.Schedule, Timeout: j.Timeout, Enabled: j.Enabled,
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
			inConfig[j.Name] = true
			info.Kind, info.fn = KindGo, jobs.Func(g.fn)
			if j.Schedule == nil {
				info.Spec, info.Schedule = g.spec, g.schedule
				info.DST = g.dst
				if j.DST != "" && j.DST != g.dst { // the entry's dst over the Go job's own schedule
					info.DST = j.DST
					var err error
					if info.Schedule, err = schedule.ParseDST(g.spec, j.DST); err != nil {
						return nil, fmt.Errorf("%s.dst: %w", j.Field, err)
					}
				}
			}
			if j.Timeout == 0 {
				info.Timeout = g.timeout
			}
			if err := info.keepPolicy(g.policy, j, cfg.Source); err != nil {
				return nil, err
			}
		}
		if info.CatchUp == "" {
			info.CatchUp = CatchUpSkip
		}
		if info.DST == "" {
			info.DST = DSTCron
		}
		if info.Overlap == "" {
			info.Overlap = OverlapSkip
		}
		out = append(out, info)
	}
	for _, g := range w.goJobs {
		if !inConfig[g.name] {
			p := g.policy
			out = append(out, JobInfo{Name: g.name, Kind: KindGo, Spec: g.spec, Schedule: g.schedule,
				Timeout: g.timeout, Enabled: true, fn: jobs.Func(g.fn), DST: cmp.Or(g.dst, DSTCron),
				CatchUp: p.catchUp, CatchUpLimit: p.catchUpLimit, Retries: p.retries, RetryBackoff: p.retryBackoff, Jitter: p.jitter,
				Overlap: cmp.Or(p.overlap, OverlapSkip)})
		}
	}
	return out, nil
}

// keepPolicy fills the settings a Go job's config entry j leaves out with
// the Go job's own, and checks the jitter against the schedule the entry
// ends up with, naming the entry's field.
func (info *JobInfo) keepPolicy(p policy, j JobConfig, source string) error {
	if info.CatchUp == "" {
		info.CatchUp = p.catchUp
	}
	if info.CatchUpLimit == 0 {
		info.CatchUpLimit = p.catchUpLimit
	}
	if info.Retries == 0 {
		info.Retries = p.retries
	}
	if info.RetryBackoff == 0 {
		info.RetryBackoff = p.retryBackoff
	}
	if info.Jitter == 0 {
		info.Jitter = p.jitter
	}
	if info.Overlap == "" {
		info.Overlap = p.overlap
	}
	err := jobs.CheckJitter(info.Jitter, info.Schedule)
	if err == nil && info.CatchUp != CatchUpSkip && info.CatchUp != "" && j.OmitSuccessRows {
		return fmt.Errorf("%s.catch_up: %s needs record_successes: true: the last tick is read from job_runs, which keeps no successes under record_successes: false", j.Field, info.CatchUp)
	}
	if err != nil {
		err = fmt.Errorf("%s.jitter: %w", j.Field, err)
		if source != "" {
			err = fmt.Errorf("config file %s: %w", source, err)
		}
	}
	return err
}
