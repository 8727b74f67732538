// Package jobs schedules the worker's jobs with robfig/cron and runs each one
// through one middleware chain: run-history record, metrics and logging,
// skip-if-still-running, panic recovery, a per-run timeout, and the
// idempotent database Init whose handle the job then uses.
package jobs

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/robfig/cron/v3"
)

// Func is the body of a job. It receives the run's context, which is done at
// the job's timeout or at shutdown, and the shared handle from Init. It must
// use the *Context methods of db so that a done context interrupts SQLite.
type Func func(ctx context.Context, db *sql.DB) (rowsAffected int64, err error)

// Job is one scheduled job.
type Job struct {
	Name     string
	Spec     string        // the schedule as written, for logs
	Schedule cron.Schedule // parsed Spec
	Timeout  time.Duration // per run; 0 means none
	Func     Func
	// RunAtStart runs the job once at Start too, in the background,
	// besides its schedule (the quick_check built-in).
	RunAtStart bool
	// OmitSuccessRows leaves a successful run out of job_runs; it is still
	// counted in the metrics, and every other result is recorded.
	OmitSuccessRows bool
}

// Result is the outcome of a run, as recorded in history and metrics.
type Result string

// The results.
const (
	Success   Result = "success"
	Failure   Result = "failure"
	Skipped   Result = "skipped"
	Panic     Result = "panic"
	Timeout   Result = "timeout"
	Cancelled Result = "cancelled"
)

// Results lists every Result.
var Results = []Result{Success, Failure, Skipped, Panic, Timeout, Cancelled}

// Errors reported by runs and the Scheduler.
var (
	ErrSkipped     = errors.New("previous run still running")
	ErrUnknownJob  = errors.New("unknown job")
	ErrStopTimeout = errors.New("runs still running after the shutdown grace period and force timeout")
	ErrAbandoned   = errors.New("abandoned at shutdown: did not return within the grace period and force timeout")
)

// PanicError is the error of a run whose job panicked.
type PanicError struct {
	Value any
	Stack []byte
}

func (e *PanicError) Error() string { return fmt.Sprintf("panic: %v", e.Value) }

// Run is the record of one run.
type Run struct {
	Job          string
	ScheduledAt  time.Time
	StartedAt    time.Time
	EndedAt      time.Time
	Result       Result
	Err          error
	RowsAffected int64
}
