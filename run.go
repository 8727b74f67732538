package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/sqlworker/worker/internal/jobs"
	"github.com/sqlworker/worker/internal/testhook"
	webpkg "github.com/sqlworker/worker/internal/web"
)

// Errors of RunNow, Pause and Resume; the admin API answers them 404, 409
// and 503.
var (
	// ErrUnknownJob is a job that is not scheduled: no such name, or a
	// disabled job.
	ErrUnknownJob = webpkg.ErrUnknownJob
	// ErrJobRunning is a run asked for while the job's previous run is
	// still going: the run is recorded as skipped, and RunNow returns its
	// record with the error.
	ErrJobRunning = webpkg.ErrJobRunning
	// ErrNotRunning is a run, a pause or a resume asked for before Start
	// succeeded or once Stop was called.
	ErrNotRunning = webpkg.ErrUnavailable
	// ErrJobPaused is a run asked for of a paused job (Pause): nothing is
	// run or recorded; Resume it first.
	ErrJobPaused = webpkg.ErrJobPaused
)

// Result is the outcome of a run, as job_runs.result and the result label
// of worker_job_runs_total say it.
type Result string

// The results.
const (
	ResultSuccess   Result = Result(jobs.Success)
	ResultFailure   Result = Result(jobs.Failure)
	ResultSkipped   Result = Result(jobs.Skipped) // the job's previous run was still going
	ResultPanic     Result = Result(jobs.Panic)
	ResultTimeout   Result = Result(jobs.Timeout)
	ResultCancelled Result = Result(jobs.Cancelled) // cut off by shutdown
)

// RunRecord is a finished run, as its job_runs row records it: the record
// RunNow returns and Options.OnRun receives. The admin API answers it as
// JSON (see the README's Admin API).
type RunRecord struct {
	Job string
	// ScheduledAt is the tick the run is for; for RunNow, the time it was
	// asked for.
	ScheduledAt time.Time
	StartedAt   time.Time
	EndedAt     time.Time
	Result      Result
	// Err is the run's error; nil on success.
	Err          error
	RowsAffected int64
	// Attempt is 1 for a tick's first attempt and n+1 for its nth retry;
	// every attempt has a record of its own.
	Attempt int
	// Jitter is the random delay the run waited after ScheduledAt.
	Jitter time.Duration
	// CatchUp is set on the run of a tick missed while the worker was
	// down (see WithCatchUp).
	CatchUp bool
}

func newRunRecord(r *jobs.Run) RunRecord {
	return RunRecord{
		Job: r.Job, ScheduledAt: r.ScheduledAt, StartedAt: r.StartedAt, EndedAt: r.EndedAt,
		Result: Result(r.Result), Err: r.Err, RowsAffected: r.RowsAffected,
		Attempt: r.Attempt, Jitter: r.Jitter, CatchUp: r.CatchUp,
	}
}

// RunNow runs the job now, through the chain a scheduled run goes through
// (on PostgreSQL claimed, so that one run of the job goes at a time across
// the replicas), and returns its record once it finished, whatever its
// result: that of its last attempt when it was retried. It is the admin
// API's POST /api/v1/jobs/{name}/run. Its error wraps ErrUnknownJob for a
// job that is not scheduled, ErrJobRunning (with the skipped run's record)
// while the job's previous run is going, ErrNotRunning before Start and
// once Stop was called, and ctx's error when ctx is done first: ctx bounds
// the wait, not the run, which goes on and is recorded like any other.
func (w *Worker) RunNow(ctx context.Context, name string) (RunRecord, error) {
	sched, err := w.scheduler(phaseStarted)
	if err != nil {
		return RunRecord{}, err
	}
	if err := w.checkNotPaused(name); err != nil {
		return RunRecord{}, err
	}
	return await(ctx, name, func() (*jobs.Run, error) { return sched.RunOnce(name) })
}

// runTick is jobtest.RunTick: the tick of the job at `at`, run now, on a
// worker that is open (Open or Start) and not stopped.
func (w *Worker) runTick(ctx context.Context, name string, at time.Time) (RunRecord, error) {
	sched, err := w.scheduler(phaseOpen)
	if err != nil {
		return RunRecord{}, err
	}
	return await(ctx, name, func() (*jobs.Run, error) { return sched.RunTick(name, at) })
}

func init() {
	testhook.RunTick = func(ctx context.Context, w any, job string, at time.Time) (any, error) {
		return w.(*Worker).runTick(ctx, job, at)
	}
}

// await runs run in the background and returns its record, or ctx's error
// when ctx is done first, with the scheduler's errors as the package's.
func await(ctx context.Context, name string, run func() (*jobs.Run, error)) (RunRecord, error) {
	type result struct {
		r   *jobs.Run
		err error
	}
	done := make(chan result, 1) // the run goes on when ctx is done first
	go func() {
		r, err := run()
		done <- result{r, err}
	}()
	var res result
	select {
	case res = <-done:
	case <-ctx.Done():
		return RunRecord{}, fmt.Errorf("job %s: %w", webpkg.Quote(name), context.Cause(ctx))
	}
	r, err := res.r, res.err
	switch {
	case errors.Is(err, jobs.ErrUnknownJob):
		return RunRecord{}, unknownJob(name, err)
	case errors.Is(err, jobs.ErrStopped):
		return RunRecord{}, fmt.Errorf("%w: shutting down", ErrNotRunning)
	case err != nil:
		return RunRecord{}, err
	case r.Result == "":
		// Not recorded here: another replica claimed the tick.
		return RunRecord{Job: r.Job, ScheduledAt: r.ScheduledAt}, fmt.Errorf("job %s: %w", webpkg.Quote(name), jobs.ErrNotClaimed)
	case r.Result == jobs.Skipped:
		return newRunRecord(r), fmt.Errorf("job %s: %w", webpkg.Quote(name), ErrJobRunning)
	}
	return newRunRecord(r), nil
}

// RunHookBuffer bounds the records that wait for Options.OnRun while it is
// busy; beyond it, records are dropped, and the drop logged.
const RunHookBuffer = 1024

// runHook hands finished runs to Options.OnRun from a goroutine of its
// own, in the order they finished, so that a slow or blocked hook never
// holds up a run or the scheduler. The goroutine starts with the first
// record and ends at Stop, once the queue is empty.
type runHook struct {
	fn     func(RunRecord)
	logger *slog.Logger
	wake   chan struct{} // a record was queued, or close was called
	done   chan struct{} // closed when the goroutine ends

	mu      sync.Mutex
	queue   []RunRecord
	dropped int
	started bool
	closed  bool
}

func newRunHook(fn func(RunRecord), logger *slog.Logger) *runHook {
	return &runHook{fn: fn, logger: logger, wake: make(chan struct{}, 1), done: make(chan struct{})}
}

// add queues r for the hook; it never blocks.
func (h *runHook) add(r RunRecord) {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case h.closed:
		return
	case len(h.queue) >= RunHookBuffer:
		h.dropped++
		return
	}
	h.queue = append(h.queue, r)
	if !h.started {
		h.started = true
		go h.loop()
	}
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

func (h *runHook) loop() {
	defer close(h.done)
	for {
		h.mu.Lock()
		batch, dropped, closed := h.queue, h.dropped, h.closed
		h.queue, h.dropped = nil, 0
		h.mu.Unlock()
		if dropped > 0 {
			h.logger.Warn("Run hook too slow: records dropped", "dropped", dropped, "buffer", RunHookBuffer)
		}
		for _, r := range batch {
			h.call(r)
		}
		if len(batch) == 0 {
			if closed {
				return
			}
			<-h.wake
		}
	}
}

// call calls the hook, recovering a panic: a bad hook must not take the
// worker down.
func (h *runHook) call(r RunRecord) {
	defer func() {
		if v := recover(); v != nil {
			h.logger.Error("Run hook panicked", "job", r.Job, "panic", v)
		}
	}()
	h.fn(r)
}

// close stops taking records and waits, until ctx is done, for the hook to
// have been given those queued.
func (h *runHook) close(ctx context.Context) {
	h.mu.Lock()
	h.closed = true
	started := h.started
	h.mu.Unlock()
	if !started {
		return
	}
	select {
	case h.wake <- struct{}{}:
	default:
	}
	select {
	case <-h.done:
	case <-ctx.Done():
	}
}
