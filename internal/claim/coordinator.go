package claim

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/sqlworker/worker/internal/jobhistory"
	"github.com/sqlworker/worker/internal/jobs"
)

// Coordinator plugs a Claimer into the scheduler's run chain: set it as
// jobs.Config.Coordinator when the backend is PostgreSQL.
//
// A retry (Tick.Attempt > 1) claims its tick again (Reclaim). A tick that
// finds the job busy, here (Skip) or on another replica (Claim), is
// recorded skipped by one replica only. At each
// other tick T of a job it claims T, first waiting out ErrNotDue (a
// replica whose clock runs ahead) up to MaxNotDueWait, and checks for
// missed ticks: the ticks of the job's schedule in (P - grace, T - grace],
// where P is the previous tick this replica was asked about (one interval
// before T at the first), are marked missed if they have no claim. Every
// replica fires every tick, so every tick is checked once it is older than
// the grace, and the insert counts it on one replica only. A tick this
// replica found a claim row for (it won, lost, skipped or found it missed)
// cannot be missed and is not checked: with every replica up, no tick is,
// and the finish statement does no missed-tick check.
type Coordinator struct {
	c *Claimer

	mu   sync.Mutex
	jobs map[string]*ticks
}

// ticks is what a Coordinator remembers of a job's ticks.
type ticks struct {
	prev time.Time // the newest tick asked about
	seen []int64   // UnixNano of the ticks with a claim row, in order, not yet past the check
}

// MaxNotDueWait bounds how long Acquire waits for a tick that is not due
// by the server's clock yet.
const MaxNotDueWait = time.Minute

// maxChecked bounds the earlier ticks checked at one tick.
const maxChecked = 1000

// NewCoordinator returns a Coordinator claiming through c, and creates the
// metric series of the named jobs at 0; those of a job added later (a
// reload) appear at its first tick.
func NewCoordinator(c *Claimer, jobNames []string) *Coordinator {
	for _, name := range jobNames {
		c.Init(name)
	}
	return &Coordinator{c: c, jobs: make(map[string]*ticks)}
}

// Acquire claims the tick; see jobs.Coordinator.
func (co *Coordinator) Acquire(ctx context.Context, t jobs.Tick) (jobs.Claim, error) {
	if t.Attempt > 1 {
		l, err := co.c.Reclaim(ctx, t.Job, t.ScheduledAt)
		switch {
		case err == nil:
			return held{l}, nil
		case errors.Is(err, ErrFenced):
			return nil, fmt.Errorf("%w: %w", jobs.ErrNotClaimed, err)
		case errors.Is(err, ErrBusy):
			return nil, fmt.Errorf("%w: %w", jobs.ErrSkipped, err)
		}
		return nil, err
	}
	var earlier []time.Time
	if !t.RunNow && !t.Backfill { // a run-now is no tick of the schedule, a backfill's is past: nothing before it to check
		earlier = co.earlier(t)
	}
	o := tickOpts{overlap: t.Overlap, backfill: t.Backfill, rerun: t.Rerun}
	deadline := time.Now().Add(MaxNotDueWait)
	for {
		l, err := co.c.claimTick(ctx, t.Job, t.ScheduledAt, o, earlier)
		var nd *NotDueError
		var lost *LostError
		switch {
		case err == nil:
			if l.ScheduledAt.Equal(t.ScheduledAt) && !t.RunNow && !t.Backfill { // not a takeover of an earlier tick
				co.seen(t.Job, t.ScheduledAt)
			}
			return held{l}, nil
		case errors.As(err, &nd) && time.Until(deadline) > nd.Wait:
			if err := waitDue(ctx, nd); err != nil {
				return nil, err
			}
			earlier = nil // checked by the first try
			continue
		case errors.As(err, &lost), errors.Is(err, ErrMissed):
			co.seen(t.Job, t.ScheduledAt)
			return nil, fmt.Errorf("%w: %w", jobs.ErrNotClaimed, err)
		case errors.Is(err, ErrBusy):
			co.seen(t.Job, t.ScheduledAt)
			return nil, fmt.Errorf("%w: %w", jobs.ErrSkipped, err)
		}
		return nil, err
	}
}

// waitDue waits out a tick that is not due by the server's clock yet.
func waitDue(ctx context.Context, nd *NotDueError) error {
	timer := time.NewTimer(nd.Wait)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return nil
	}
}

// Skip records a tick skipped, once across the replicas, because the job
// is still running on this replica or is paused; see jobs.Skipper. A
// paused tick not due by the server's clock yet (this replica's runs
// ahead) is waited for, as Acquire does, up to MaxNotDueWait: every
// replica skips it, so one of them must record it, or the tick would
// later be marked missed. A tick skipped because the job runs here is
// not: another replica, whose clock is not ahead, may run it. When the
// database cannot be reached the tick is skipped here, as on a single
// node.
func (co *Coordinator) Skip(ctx context.Context, t jobs.Tick) error {
	err := co.c.Skip(ctx, t.Job, t.ScheduledAt)
	deadline := time.Now().Add(MaxNotDueWait)
	for nd := (*NotDueError)(nil); t.Paused && errors.As(err, &nd) && time.Until(deadline) > nd.Wait; {
		if waitDue(ctx, nd) != nil {
			break // stopping: as not due, below
		}
		err = co.c.Skip(ctx, t.Job, t.ScheduledAt)
	}
	var lost *LostError
	var nd *NotDueError
	switch {
	case errors.Is(err, ErrBusy):
		co.seen(t.Job, t.ScheduledAt)
		return fmt.Errorf("%w: %w", jobs.ErrSkipped, err)
	case errors.As(err, &lost), errors.As(err, &nd):
		// Another replica has the tick, or will claim or skip it once due.
		if lost != nil {
			co.seen(t.Job, t.ScheduledAt)
		}
		return fmt.Errorf("%w: %w", jobs.ErrNotClaimed, err)
	}
	return fmt.Errorf("%w (not recorded across replicas: %w)", jobs.ErrSkipped, err)
}

// earlier returns the ticks to check for a claim at tick t, and remembers t.
func (co *Coordinator) earlier(t jobs.Tick) []time.Time {
	co.mu.Lock()
	defer co.mu.Unlock()
	jt, ok := co.jobs[t.Job]
	if !ok {
		co.c.Init(t.Job)
		jt = &ticks{prev: t.ScheduledAt}
		if t.Schedule != nil {
			jt.prev = t.ScheduledAt.Add(-t.Schedule.Next(t.ScheduledAt).Sub(t.ScheduledAt))
		}
		co.jobs[t.Job] = jt
	}
	prev := jt.prev
	if t.ScheduledAt.After(prev) {
		jt.prev = t.ScheduledAt
	}
	grace := co.c.MissedGrace()
	to := t.ScheduledAt.Add(-grace)
	var out []time.Time
	for tick := prev.Add(-grace); t.Schedule != nil && len(out) < maxChecked; {
		if tick = t.Schedule.Next(tick); tick.After(to) {
			break
		}
		if _, found := slices.BinarySearch(jt.seen, tick.UnixNano()); !found {
			out = append(out, tick)
		}
	}
	// The ticks up to to are checked now or were before: forget them.
	i, found := slices.BinarySearch(jt.seen, to.UnixNano())
	if found {
		i++
	}
	jt.seen = slices.Delete(jt.seen, 0, i)
	return out
}

// seen remembers that the tick (job, at) has a claim row.
func (co *Coordinator) seen(job string, at time.Time) {
	co.mu.Lock()
	defer co.mu.Unlock()
	jt, ok := co.jobs[job]
	if !ok {
		return
	}
	n := at.UnixNano()
	if i, found := slices.BinarySearch(jt.seen, n); !found {
		jt.seen = slices.Insert(jt.seen, i, n)
	}
}

// Scan takes over, every third of the lease, the runs of the Coordinator's
// jobs that another replica left running with a lease that has run out, and
// hands them to run; see jobs.Scanner. It measures the clock offset to the
// server at start and at each scan. Without it a dead replica's run
// would wait for the job's next tick.
func (co *Coordinator) Scan(ctx context.Context, jobNames func() []string, run func(job string, c jobs.Claim)) {
	t := time.NewTicker(co.c.Lease() / 3)
	defer t.Stop()
	for {
		// The clock offset is measured here, beside the claims, not in
		// their round trips: a claim is a bare INSERT.
		if _, err := co.c.MeasureOffset(ctx); err != nil && ctx.Err() == nil {
			co.c.logger.Warn("Cannot measure the clock offset to the database server", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		leases, err := co.c.TakeOverExpired(ctx, jobNames())
		if err != nil && ctx.Err() == nil {
			co.c.logger.Warn("Cannot scan for runs to take over", "err", err)
		}
		for _, l := range leases {
			run(l.Job, held{l})
		}
	}
}

// held is a Lease as a jobs.Claim.
type held struct{ l *Lease }

var _ jobs.Recorder = held{}

func (h held) ScheduledAt() time.Time                   { return h.l.ScheduledAt }
func (h held) Keep(ctx context.Context) context.Context { return h.l.Hold(ctx) }
func (h held) Release(ctx context.Context, runErr error) error {
	if handedOn(runErr) {
		return h.l.Abandon(ctx)
	}
	return h.l.Finish(ctx, runErr == nil)
}

// handedOn reports whether a run that ended with runErr was cut off, by
// Stop or by the loss of its lease: it is handed on for another replica to
// run (Abandon), unless one already took it over.
func handedOn(runErr error) bool {
	return errors.Is(runErr, jobs.ErrStopped) || errors.Is(runErr, ErrLeaseLost)
}

// ReleaseRecording finishes the claim and writes the run's row in one
// statement; see jobs.Recorder. A run cut off is handed on as by Release,
// and writes no row here. When the statement fails other than by fencing
// (job_runs refused the row, say), the claim is finished alone, so that a
// run done is not run again by a takeover for want of its history row.
func (h held) ReleaseRecording(ctx context.Context, runErr error, row jobhistory.RunRow) (bool, error) {
	if handedOn(runErr) {
		return false, h.l.Abandon(ctx)
	}
	err := h.l.FinishRecording(ctx, runErr == nil, row)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, ErrFenced):
		return false, err
	}
	h.l.c.logger.Warn("Cannot finish the claim and record the run in one statement: finishing it alone", "job", h.l.Job, "err", err)
	return false, h.l.Finish(ctx, runErr == nil)
}
