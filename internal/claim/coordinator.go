package claim

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/sqlworker/worker/internal/jobs"
)

// Coordinator plugs a Claimer into the scheduler's run chain: set it as
// jobs.Config.Coordinator when the backend is PostgreSQL.
//
// At each tick T of a job it claims T, first waiting out ErrNotDue (a
// replica whose clock runs ahead) up to MaxNotDueWait, and checks for
// missed ticks: the ticks of the job's schedule in (P - grace, T - grace],
// where P is the previous tick this replica was asked about (one interval
// before T at the first), are marked missed if they have no claim. Every
// replica fires every tick, so every tick is checked once it is older than
// the grace, and the insert counts it on one replica only.
type Coordinator struct {
	c *Claimer

	mu   sync.Mutex
	prev map[string]time.Time // the previous tick per job
}

// MaxNotDueWait bounds how long Acquire waits for a tick that is not due
// by the server's clock yet.
const MaxNotDueWait = time.Minute

// maxChecked bounds the earlier ticks checked at one tick.
const maxChecked = 1000

// NewCoordinator returns a Coordinator claiming through c, and creates the
// metric series of the named jobs at 0.
func NewCoordinator(c *Claimer, jobNames []string) *Coordinator {
	for _, name := range jobNames {
		c.Init(name)
	}
	return &Coordinator{c: c, prev: make(map[string]time.Time)}
}

// Acquire claims the tick; see jobs.Coordinator.
func (co *Coordinator) Acquire(ctx context.Context, t jobs.Tick) (jobs.Hold, error) {
	earlier := co.earlier(t)
	deadline := time.Now().Add(MaxNotDueWait)
	for {
		l, err := co.c.Claim(ctx, t.Job, t.ScheduledAt, earlier...)
		var nd *NotDueError
		var lost *LostError
		switch {
		case err == nil:
			return &hold{l: l, ctx: l.Hold(ctx)}, nil
		case errors.As(err, &nd) && time.Until(deadline) > nd.Wait:
			timer := time.NewTimer(nd.Wait)
			select {
			case <-ctx.Done():
				timer.Stop()
				return nil, ctx.Err()
			case <-timer.C:
			}
			earlier = nil // checked by the first try
			continue
		case errors.As(err, &lost), errors.Is(err, ErrMissed):
			return nil, fmt.Errorf("%w: %w", jobs.ErrNotClaimed, err)
		case errors.Is(err, ErrBusy):
			return nil, fmt.Errorf("%w: %w", jobs.ErrSkipped, err)
		}
		return nil, err
	}
}

// earlier returns the ticks to check for a claim at tick t, and remembers t.
func (co *Coordinator) earlier(t jobs.Tick) []time.Time {
	co.mu.Lock()
	prev, ok := co.prev[t.Job]
	if !ok || t.ScheduledAt.After(prev) {
		co.prev[t.Job] = t.ScheduledAt
	}
	co.mu.Unlock()
	if t.Schedule == nil {
		return nil
	}
	if !ok {
		prev = t.ScheduledAt.Add(-t.Schedule.Next(t.ScheduledAt).Sub(t.ScheduledAt))
	}
	grace := co.c.MissedGrace()
	to := t.ScheduledAt.Add(-grace)
	var out []time.Time
	for tick := t.Schedule.Next(prev.Add(-grace)); !tick.After(to) && len(out) < maxChecked; tick = t.Schedule.Next(tick) {
		out = append(out, tick)
	}
	return out
}

// hold is a held Lease as a jobs.Hold.
type hold struct {
	l   *Lease
	ctx context.Context
}

func (h *hold) ScheduledAt() time.Time   { return h.l.ScheduledAt }
func (h *hold) Context() context.Context { return h.ctx }
func (h *hold) Release(ctx context.Context, runErr error) error {
	return h.l.Finish(ctx, runErr == nil)
}
