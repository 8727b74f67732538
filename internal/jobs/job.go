// Package jobs schedules the worker's jobs with robfig/cron and runs each one
// through one middleware chain: run-history record, metrics and logging,
// the job's overlap policy (skip, buffer_one or replace), the claim of the tick among replicas when a
// Coordinator is set, panic recovery, a per-run timeout, and the idempotent
// database Init whose handle the job then uses.
package jobs

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"github.com/sqlworker/worker/internal/schedule"
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
	// DST is the policy Schedule was parsed with at daylight-saving
	// changes ("" is schedule.DSTCron): with Spec, it says whether a
	// reload changed the schedule.
	DST     schedule.DST
	Timeout time.Duration // per run; 0 means none
	Func    Func
	// RunAtStart runs the job once at Start too, in the background,
	// besides its schedule (the quick_check built-in).
	RunAtStart bool
	// OmitSuccessRows leaves a successful run out of job_runs; it is still
	// counted in the metrics, and every other result is recorded.
	OmitSuccessRows bool
	// CatchUp is what happens to the ticks missed while the worker was
	// down or paused (see CatchUp); "" is CatchUpSkip.
	CatchUp CatchUp
	// CatchUpLimit bounds the missed ticks CatchUpAll runs; 0 means
	// DefaultCatchUpLimit.
	CatchUpLimit int
	// Retries is how many more attempts a run gets after a retryable
	// failure (see Retryable); 0 means none.
	Retries int
	// RetryBackoff is the wait before the first retry, doubled for each
	// one after it up to MaxRetryBackoff; 0 means DefaultRetryBackoff.
	RetryBackoff time.Duration
	// Jitter delays each scheduled run by a random duration in [0, Jitter);
	// it must be less than the schedule's interval. 0 means none.
	Jitter time.Duration
	// Source is what Func runs, as text (a SQL job's SQL): Replace
	// compares it, as a Func cannot be compared.
	Source string
	// PerReplica runs every tick on every replica: a Coordinator never
	// claims, skips or takes over its ticks. It is for a replica's own
	// liveness (the heartbeat): a check claimed by one replica says nothing
	// of the others.
	PerReplica bool
	// Overlap is what happens to a run that comes while the job's previous
	// run is still going (see Overlap); "" is OverlapSkip.
	Overlap Overlap
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
	// Attempt is 1 for a run's first attempt and n+1 for its nth retry;
	// every attempt has a Run of its own, with the same ScheduledAt.
	Attempt int
	// Jitter is the random delay the run waited after ScheduledAt; its
	// start delay is counted from ScheduledAt + Jitter.
	Jitter time.Duration
	// CatchUp is set on the run of a tick that was missed: it is late on
	// purpose and left out of worker_job_start_delay_seconds.
	CatchUp bool

	retryIn time.Duration // > 0: a retry follows after this wait (set by record)
	gaveUp  bool          // a retryable failure that was not retried

	manual     bool          // RunOnce or RunAtStart: no tick of the schedule
	runNow     bool          // RunOnce: claimed as a Tick.RunNow, one run at a time across replicas
	backfill   bool          // Backfill: a past tick asked for, claimed as a Tick.Backfill
	rerun      bool          // Backfill with Rerun: its tick may have succeeded before
	slotHeld   bool          // its catch-up sequence holds the job's running slot (see holdSlot)
	holdsSlot  bool          // overlap took the job's running slot for it: record frees it (freeSlot)
	claimedAt  time.Time     // when a Coordinator's claim was won: the body starts then
	takenOver  *trackedClaim // the claim, when the Coordinator's scan took the tick over
	ownsRecord bool          // coordinate took the recording from Stop's abandon
	recorded   bool          // a Recorder wrote the job_runs row with its release
}
