package claim

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// Overlap policies across replicas (jobs.OverlapBufferOne and
// jobs.OverlapReplace), on job_claims:
//
//   - A tick whose claim conflicts with the job's running claim (the
//     one-running index) is not recorded skipped but buffered: a row of
//     status 'buffered', which a second partial unique index allows once
//     per job, holds the tick for this replica with a lease that the
//     waiting replica renews at each poll. A buffered row whose lease ran
//     out (its replica died while waiting) is turned 'skipped' by the next
//     tick that wants the slot.
//   - The waiting replica polls every pollEvery: it turns its buffered row
//     'running' (attempt 1) once the job has no running claim, and then
//     runs the tick as one it won. Until then no two claims of the job run.
//   - Under buffer_one, a tick that finds another tick buffered is skipped
//     as a single node's: its 'skipped' row wins it for one replica.
//   - Under replace, the tick first turns an older buffered tick 'skipped'
//     (its waiting replica sees its row go and records it skipped), then
//     sets cancel_requested on the running claim: the owner's next renewal
//     (every third of the lease) reads it and cancels the run, with cause
//     jobs.ErrReplaced; the run finishes 'failed' and is recorded
//     'cancelled', and the buffered tick starts.
//
// So a replace takes up to a third of the lease to reach another replica's
// run, and a buffered tick starts up to pollEvery after the run ended.

// pollEvery is how often a buffered tick checks whether it can run, at
// most: a tenth of the lease, between 10ms and 1s.
func (c *Claimer) pollEvery() time.Duration {
	return min(max(c.cfg.Lease/10, 10*time.Millisecond), time.Second)
}

// bufferSQL inserts the tick buffered for owner $3, unless the tick has a
// row or the job has a buffered tick, and reads what stands in its way.
const bufferSQL = `WITH b AS (
	INSERT INTO job_claims (job, scheduled_at, owner, attempt, lease_until, status, started_at)
	SELECT $1, $2, $3, 0, now() + $4 * interval '1 microsecond', 'buffered', now()
	WHERE $2 <= now()
	ON CONFLICT DO NOTHING
	RETURNING 1
)
SELECT EXISTS (SELECT 1 FROM b), $2 <= now(), now(),
	coalesce((SELECT owner FROM job_claims WHERE job = $1 AND scheduled_at = $2), ''),
	coalesce((SELECT status FROM job_claims WHERE job = $1 AND scheduled_at = $2), '')`

// unbufferSQL turns the job's buffered ticks skipped whose lease ran out,
// and, under replace ($3), those older than the tick $2.
const unbufferSQL = `UPDATE job_claims SET status = 'skipped', finished_at = now()
WHERE job = $1 AND status = 'buffered' AND (lease_until < now() OR ($3 AND scheduled_at < $2))`

// promoteSQL starts a buffered tick once the job has no running claim.
const promoteSQL = `UPDATE job_claims SET status = 'running', attempt = 1, lease_until = now() + $4 * interval '1 microsecond', started_at = now()
WHERE job = $1 AND scheduled_at = $2 AND owner = $3 AND status = 'buffered'
	AND NOT EXISTS (SELECT 1 FROM job_claims WHERE job = $1 AND status = 'running')`

// waitSQL renews a buffered tick's lease; no row: it was displaced.
const waitSQL = `UPDATE job_claims SET lease_until = now() + $4 * interval '1 microsecond'
WHERE job = $1 AND scheduled_at = $2 AND owner = $3 AND status = 'buffered'`

// buffer is Claim for a tick that found the job running elsewhere, under
// buffer_one or replace: it buffers the tick, asks the running run to stop
// (replace), and waits until the tick can run; see the comment above.
func (c *Claimer) buffer(ctx context.Context, job string, tick time.Time, replace bool) (*Lease, error) {
	d, err := c.db(ctx)
	if err != nil {
		return nil, err
	}
	lease := c.cfg.Lease.Microseconds()
	if _, err := d.ExecContext(ctx, unbufferSQL, job, tick, replace); err != nil {
		return nil, fmt.Errorf("cannot buffer tick %s of job %q: %w", tick.Format(time.RFC3339), job, err)
	}
	var won, due bool
	var now time.Time
	var owner, status string
	if err := d.QueryRowContext(ctx, bufferSQL, job, tick, c.cfg.Owner, lease).Scan(&won, &due, &now, &owner, &status); err != nil {
		return nil, fmt.Errorf("cannot buffer tick %s of job %q: %w", tick.Format(time.RFC3339), job, err)
	}
	switch {
	case !due:
		return nil, &NotDueError{Job: job, ScheduledAt: tick, Wait: tick.Sub(now)}
	case status != "" && !won:
		c.metrics.claims.WithLabelValues(job, string(Lost)).Inc()
		return nil, &LostError{Job: job, ScheduledAt: tick, Owner: owner, Status: status}
	case !won: // another tick is buffered: this one is skipped
		return nil, c.skip(ctx, job, tick)
	}
	if replace {
		if _, err := d.ExecContext(ctx, `UPDATE job_claims SET cancel_requested = now()
WHERE job = $1 AND status = 'running' AND cancel_requested IS NULL`, job); err != nil {
			c.logger.Warn("Cannot ask the running run to stop", "job", job, "err", err)
		}
	}
	return c.waitBuffered(ctx, d, job, tick)
}

// waitBuffered polls until the buffered tick runs, is displaced, or ctx
// is done; a tick that stops waiting is left skipped.
func (c *Claimer) waitBuffered(ctx context.Context, d *sql.DB, job string, tick time.Time) (*Lease, error) {
	lease := c.cfg.Lease.Microseconds()
	t := time.NewTicker(c.pollEvery())
	defer t.Stop()
	for {
		res, err := d.ExecContext(ctx, promoteSQL, job, tick, c.cfg.Owner, lease)
		var n int64
		if err == nil {
			n, err = res.RowsAffected()
		}
		var pe *pgconn.PgError
		switch {
		case err == nil && n == 1:
			c.metrics.claims.WithLabelValues(job, string(Won)).Inc()
			return c.newLease(job, tick, 1, Won), nil
		case err == nil, errors.As(err, &pe) && pe.Code == uniqueViolation:
			// Still running (or another tick won the slot first): wait on.
		case ctx.Err() == nil:
			c.logger.Warn("Cannot start a buffered tick", "job", job, "err", err)
		}
		if err == nil || ctx.Err() == nil {
			res, err := d.ExecContext(ctx, waitSQL, job, tick, c.cfg.Owner, lease)
			if err == nil {
				if n, _ := res.RowsAffected(); n == 0 {
					c.metrics.claims.WithLabelValues(job, string(Skipped)).Inc()
					return nil, fmt.Errorf("job %q, tick %s: a newer tick replaced it while buffered: %w", job, tick.Format(time.RFC3339), ErrBusy)
				}
			}
		}
		select {
		case <-ctx.Done():
			return nil, c.unbuffer(job, tick, ctx.Err())
		case <-t.C:
		}
	}
}

// unbuffer turns this replica's buffered tick skipped: it stopped waiting.
func (c *Claimer) unbuffer(job string, tick time.Time, why error) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if d, err := c.db(ctx); err == nil {
		_, err = d.ExecContext(ctx, `UPDATE job_claims SET status = 'skipped', finished_at = now()
WHERE job = $1 AND scheduled_at = $2 AND owner = $3 AND status = 'buffered'`, job, tick, c.cfg.Owner)
		if err != nil {
			c.logger.Warn("Cannot give up a buffered tick", "job", job, "err", err)
		}
	}
	c.metrics.claims.WithLabelValues(job, string(Skipped)).Inc()
	return fmt.Errorf("job %q, tick %s: stopped waiting while buffered: %w: %w", job, tick.Format(time.RFC3339), ErrBusy, why)
}

// reclaimPastSQL claims a past tick for a backfill when its row says it
// did not run to success: missed, skipped or failed, or succeeded with
// rerun ($5). Concurrent backfills queue on the row lock; the later ones
// find it running or finished and claim nothing.
const reclaimPastSQL = `UPDATE job_claims
SET status = 'running', owner = $3, attempt = attempt + 1, lease_until = now() + $4 * interval '1 microsecond',
	started_at = now(), finished_at = NULL, cancel_requested = NULL
WHERE job = $1 AND scheduled_at = $2 AND (status IN ('missed', 'skipped', 'failed') OR ($5 AND status = 'succeeded'))
RETURNING attempt`

// reclaimPast claims the past tick for a backfill when its claim row
// allows it; nil and no error when it does not. ErrBusy: another tick of
// the job runs now.
func (c *Claimer) reclaimPast(ctx context.Context, job string, tick time.Time, rerun bool) (*Lease, error) {
	d, err := c.db(ctx)
	if err != nil {
		return nil, err
	}
	var attempt int
	err = d.QueryRowContext(ctx, reclaimPastSQL, job, tick, c.cfg.Owner, c.cfg.Lease.Microseconds(), rerun).Scan(&attempt)
	var pe *pgconn.PgError
	switch {
	case err == nil:
		c.metrics.claims.WithLabelValues(job, string(Won)).Inc()
		return c.newLease(job, tick, attempt, Won), nil
	case errors.Is(err, sql.ErrNoRows):
		return nil, nil
	case errors.As(err, &pe) && pe.Code == uniqueViolation:
		return nil, fmt.Errorf("job %q, tick %s: %w", job, tick.Format(time.RFC3339), ErrBusy)
	}
	return nil, fmt.Errorf("cannot claim tick %s of job %q for a backfill: %w", tick.Format(time.RFC3339), job, err)
}
