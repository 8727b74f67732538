package worker

import (
	"context"
	"database/sql"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/sqlworker/worker/internal/jobs"
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

// goJob is a registered Go job.
type goJob struct {
	name     string
	spec     string
	schedule cron.Schedule
	timeout  time.Duration
	fn       Func
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

	fn              jobs.Func
	runAtStart      bool // the config's RunAtStart
	omitSuccessRows bool // the config's OmitSuccessRows (record_successes: false)
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
func (w *Worker) planLocked() ([]JobInfo, error) {
	byName := make(map[string]goJob, len(w.goJobs))
	for _, g := range w.goJobs {
		byName[g.name] = g
	}
	var out []JobInfo
	inConfig := make(map[string]bool)
	for _, j := range w.cfg.Jobs {
		info := JobInfo{Name: j.Name, Spec: j.Spec, Schedule: j.Schedule, Timeout: j.Timeout, Enabled: j.Enabled,
			runAtStart: j.RunAtStart, omitSuccessRows: j.OmitSuccessRows}
		switch {
		case j.Builtin:
			fn, err := w.builtins.Func(j.Name)
			if err != nil {
				return nil, err
			}
			info.Kind, info.fn = KindBuiltin, fn
		case !j.Go:
			info.Kind, info.fn = KindSQL, jobs.SQLFunc(j.SQL)
		default:
			g, ok := byName[j.Name]
			if !ok {
				return nil, w.cfg.GoJobError(j)
			}
			inConfig[j.Name] = true
			info.Kind, info.fn = KindGo, jobs.Func(g.fn)
			if j.Schedule == nil {
				info.Spec, info.Schedule = g.spec, g.schedule
			}
			if j.Timeout == 0 {
				info.Timeout = g.timeout
			}
		}
		out = append(out, info)
	}
	for _, g := range w.goJobs {
		if !inConfig[g.name] {
			out = append(out, JobInfo{Name: g.name, Kind: KindGo, Spec: g.spec, Schedule: g.schedule,
				Timeout: g.timeout, Enabled: true, fn: jobs.Func(g.fn)})
		}
	}
	return out, nil
}
