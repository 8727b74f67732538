// Package claim makes replicas that share one PostgreSQL database run each
// scheduled tick of each job at most once to success, and lose none when a
// replica dies.
//
// A tick is the pair (job, scheduled time), the time taken from the cron
// spec, so replicas agree on it whatever their clocks say. A Claimer claims
// a tick with one INSERT ... ON CONFLICT DO NOTHING into job_claims, keyed
// by (job, scheduled_at): exactly one replica's insert wins. The winner holds
// a lease (owner, attempt, lease_until) that it renews while the job runs; a
// replica that dies stops renewing, and once the lease has run out a live
// replica takes the run over with attempt + 1: the next to claim a tick of
// that job, or the first whose scan (TakeOverExpired, every third of the
// lease in the Coordinator) finds it.
// Renew and Finish name the owner and attempt, so a replica that was paused
// or partitioned past its lease is fenced: its renewal and finish change no
// row, its run's context is cancelled (see Lease.Hold), and the refused
// finish is counted and logged.
//
// Every time that decides anything (is the tick due, has the lease run out)
// is the server's now(), never the replica's clock: a replica whose clock
// runs ahead gets ErrNotDue with how long to wait, by the server's clock.
// The offset between the two clocks is measured by MeasureOffset (the
// Coordinator's scan calls it) and exported.
//
// This is at-least-once execution of a job body: a takeover reruns a body
// whose owner may have done part or all of its work before it died or was
// fenced. Job SQL must therefore be idempotent.
//
// A partial unique index allows one running claim per job, so a slow run on
// one replica is never overlapped by the next tick on another. Such a tick,
// found busy (on any replica: the dead one's lease has not run out yet, or a
// run is slow), is recorded skipped once across the replicas: a row of
// status 'skipped', inserted with ON CONFLICT DO NOTHING on the same key as
// a claim, wins the tick for one replica, which gets ErrBusy and records a
// skipped run, as a single node's skip-if-running does; the others get a
// *LostError and record nothing. So every tick that any replica saw ends
// with exactly one job_claims row, succeeded, failed, skipped or missed, and
// missed means that no replica saw the tick at all.
//
// Under the overlap policies buffer_one and replace, a busy tick is
// buffered instead of skipped, and replace asks the running run to stop
// through its owner's renewals: see overlap.go.
//
// Missed ticks: a tick that no replica claimed within MissedGrace of its
// scheduled time is marked missed by a row of status 'missed', inserted with
// ON CONFLICT DO NOTHING like a claim, so that it is counted once across all
// replicas (by the replica whose insert won) and can no longer be claimed
// late. Which ticks to check is the caller's: Claim takes the earlier ticks
// to check along with the tick it claims. The Coordinator passes, at each
// tick of a job, the ticks scheduled between its previous tick and this one,
// shifted back by MissedGrace, so that every replica checks every tick once
// it is older than the grace.
//
// Wiring, as worker.go does it for the PostgreSQL backend: one Claimer per
// process with DB the *db.Handle itself (a jobs.Initer, so a handle opened
// late or reopened is followed), Owner handle.ApplicationName() and the
// worker's registry, and NewCoordinator(claimer, the job names) as
// jobs.Config.Coordinator. Its claims are jobs.Recorders: the finish of a
// run writes the run's job_runs row (Lease.FinishRecording), so that a
// tick commits twice, the claim and the finish with the row, not three
// times. On SQLite the Coordinator is nil. history_prune
// calls Prune through jobs.Builtins.PruneClaims.
package claim

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sqlworker/worker/internal/faultinject/clockskew"
	"github.com/sqlworker/worker/internal/jobhistory"
	"github.com/sqlworker/worker/internal/jobs"
	"github.com/sqlworker/worker/internal/metricopt"
)

// Defaults for Config.
const (
	DefaultLease       = 15 * time.Second
	DefaultMissedGrace = time.Minute
	DefaultNamespace   = metricopt.DefaultNamespace
	// MinLease is the shortest Config.Lease: renewals every third of it
	// must leave a round trip time to finish.
	MinLease = 10 * time.Millisecond
)

// Errors of Claim, Renew and Finish.
var (
	// ErrNotDue is wrapped by a *NotDueError: the tick is later than the
	// server's now().
	ErrNotDue = errors.New("tick is not due yet by the server's clock")
	// ErrBusy: another tick of the job is running under a live lease, and
	// this replica recorded the tick skipped (its 'skipped' row won).
	ErrBusy = errors.New("another tick of the job is still running")
	// ErrMissed: the tick was marked missed, too late to claim.
	ErrMissed = errors.New("tick was marked missed")
	// ErrFenced: the claim belongs to another owner or attempt now, so a
	// renewal or finish changed nothing.
	ErrFenced = errors.New("claim fenced: taken over by another owner or attempt")
	// ErrLeaseLost is the cause of a held run's cancelled context.
	ErrLeaseLost = errors.New("lease lost")
)

// NotDueError is the error of a Claim made before the tick is due by the
// server's clock.
type NotDueError struct {
	Job         string
	ScheduledAt time.Time
	Wait        time.Duration // until the tick is due, by the server's clock
}

func (e *NotDueError) Error() string {
	return fmt.Sprintf("tick %s of job %q is not due for %s by the server's clock", e.ScheduledAt.Format(time.RFC3339Nano), e.Job, e.Wait)
}

// Unwrap makes errors.Is(err, ErrNotDue) hold.
func (e *NotDueError) Unwrap() error { return ErrNotDue }

// Result says how a Lease was obtained; it is the result label of
// worker_job_claims_total.
type Result string

// The results of a claim.
const (
	Won       Result = "won"        // this replica's insert won the tick
	Lost      Result = "lost"       // another replica has the tick
	TakenOver Result = "taken_over" // a running claim whose lease ran out, now this replica's
	Skipped   Result = "skipped"    // the tick found the job busy; this replica recorded it skipped
)

// Config holds the settings of a Claimer.
type Config struct {
	// DB gives the handle of every statement: the worker's db.Handle,
	// whose handle is opened, or reopened, when the server is reachable.
	DB jobs.Initer
	// Owner names this replica in job_claims; it must differ between
	// replicas (the worker's application_name suits).
	Owner string
	// Lease is how long a claim stays this replica's without a renewal;
	// 0 means DefaultLease. Lease.Hold renews every Lease/3.
	Lease time.Duration
	// MissedGrace is how long after its scheduled time a tick with no
	// claim is marked missed; 0 means DefaultMissedGrace.
	MissedGrace time.Duration
	Namespace   string // metric namespace; "" means DefaultNamespace
	Registerer  prometheus.Registerer
	Logger      *slog.Logger
}

// Claimer claims ticks for one replica. It is safe for concurrent use.
type Claimer struct {
	cfg     Config
	logger  *slog.Logger
	metrics *metrics
	now     func() time.Time // the local clock; skewed in tests
}

// New returns a Claimer and registers its metrics. Its database must have
// job_claims: the worker's handle creates it on open (internal/schema).
func New(cfg Config) (*Claimer, error) {
	if cfg.DB == nil {
		return nil, errors.New("claim: Config.DB is nil")
	}
	if cfg.Owner == "" {
		return nil, errors.New("claim: Config.Owner is empty")
	}
	if cfg.Lease < 0 || cfg.MissedGrace < 0 {
		return nil, fmt.Errorf("claim: Config.Lease %s and MissedGrace %s must not be negative", cfg.Lease, cfg.MissedGrace)
	}
	if cfg.Lease != 0 && cfg.Lease < MinLease {
		return nil, fmt.Errorf("claim: Config.Lease %s is shorter than %s", cfg.Lease, MinLease)
	}
	if cfg.Lease == 0 {
		cfg.Lease = DefaultLease
	}
	if cfg.MissedGrace == 0 {
		cfg.MissedGrace = DefaultMissedGrace
	}
	if cfg.Namespace == "" {
		cfg.Namespace = DefaultNamespace
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	c := &Claimer{cfg: cfg, logger: logger, metrics: newMetrics(cfg.Namespace), now: clockskew.Now}
	if cfg.Registerer != nil {
		for _, m := range c.metrics.collectors() {
			if err := cfg.Registerer.Register(m); err != nil {
				return nil, fmt.Errorf("claim: cannot register metrics: %w", err)
			}
		}
	}
	return c, nil
}

// Owner returns the owner id this Claimer writes.
func (c *Claimer) Owner() string { return c.cfg.Owner }

// Lease returns the lease length.
func (c *Claimer) Lease() time.Duration { return c.cfg.Lease }

// MissedGrace returns how long a tick may go unclaimed before it is missed.
func (c *Claimer) MissedGrace() time.Duration { return c.cfg.MissedGrace }

// db returns the handle for a statement.
func (c *Claimer) db(ctx context.Context) (*sql.DB, error) {
	d, err := c.cfg.DB.Init(ctx)
	if err != nil {
		return nil, fmt.Errorf("cannot reach the database: %w", err)
	}
	return d, nil
}

// Init creates the job's series at 0, so that rate() over a result that
// never happened is 0, not empty.
func (c *Claimer) Init(job string) { c.metrics.init(job) }

// claimSQL claims a tick in one round trip, an INSERT like any other: the
// replica whose insert wrote the row won. The insert sees now() of the
// statement, so a tick that is not due by the server's clock writes no row;
// a concurrent insert of the same key makes ON CONFLICT wait for it and then
// do nothing, so exactly one replica's insert writes a row.
const claimSQL = `INSERT INTO job_claims (job, scheduled_at, owner, attempt, lease_until, status, started_at)
SELECT $1, $2, $3, 1, now() + $4 * interval '1 microsecond', 'running', now()
WHERE $2 <= now()
ON CONFLICT DO NOTHING`

// missedCTE marks the ticks of job $1 in the timestamptz array ticks
// missed, as owner, when they are older than grace microseconds and have no
// claim, and the job has a claim before them (the arguments name the
// statement's parameters). The statements that use it count its rows.
func missedCTE(owner, ticks, grace string) string {
	return `missed AS (
	INSERT INTO job_claims (job, scheduled_at, owner, attempt, lease_until, status, started_at, finished_at)
	SELECT $1, t, ` + owner + `, 0, now(), 'missed', now(), now()
	FROM unnest(` + ticks + `::timestamptz[]) AS t
	WHERE t <= now() - ` + grace + ` * interval '1 microsecond'
		AND EXISTS (SELECT 1 FROM job_claims WHERE job = $1 AND scheduled_at < t)
	ON CONFLICT DO NOTHING
	RETURNING 1
)`
}

var markMissedSQL = `WITH ` + missedCTE("$2", "$3", "$4") + `
SELECT count(*) FROM missed`

// finishSQL finishes a claim, fenced by owner and attempt.
const finishSQL = `UPDATE job_claims SET status = $5, finished_at = now()
	WHERE job = $1 AND scheduled_at = $2 AND owner = $3 AND attempt = $4 AND status = 'running'`

// finishSQLs are the finish statements, indexed by [checking][recording]:
// checking marks missed ticks too ($6, $7), recording writes the run's
// job_runs row too (the parameters after), when the finish is accepted, in
// the same statement and commit. Without checking, a statement writes one
// row exactly when the finish is accepted (the UPDATE's, or the job_runs
// INSERT's that the UPDATE's CTE gates), so it is an Exec; with checking it
// is a query that returns whether the finish was accepted and the ticks
// marked missed.
var finishSQLs = func() (q [2][2]string) {
	const done = `WITH done AS (` + finishSQL + ` RETURNING 1)`
	run := func(first int) string { return jobhistory.InsertRunWhereSQL(first, `EXISTS (SELECT 1 FROM done)`) }
	q[0][0] = finishSQL
	q[0][1] = done + "\n" + run(6)
	checking := done + `, ` + missedCTE("$3", "$6", "$7")
	q[1][0] = checking + `
SELECT EXISTS (SELECT 1 FROM done), (SELECT count(*) FROM missed)`
	q[1][1] = checking + `, run AS (` + run(8) + ` RETURNING 1)
SELECT EXISTS (SELECT 1 FROM done), (SELECT count(*) FROM missed)`
	return q
}()

// takeoverSQL, after a claim that did not win, takes over the job's
// running claim whose lease has run out, or else reads the tick's claim,
// in one round trip. The partial index allows one running claim per job;
// concurrent takeovers queue on the row lock, and the later ones re-check
// lease_until and find it renewed. No row: the tick is not due by the
// server's clock, or the claim conflicted with the running claim of another
// tick (skip tells the two apart).
const takeoverSQL = `WITH t AS (
	UPDATE job_claims
	SET attempt = attempt + 1, owner = $2, lease_until = now() + $3 * interval '1 microsecond', started_at = now()
	WHERE job = $1 AND status = 'running' AND lease_until < now() AND scheduled_at <= $4 AND $4 <= now()
	RETURNING scheduled_at, attempt
)
SELECT true, scheduled_at, attempt, '', '' FROM t
UNION ALL
SELECT false, scheduled_at, attempt, owner, status FROM job_claims
WHERE job = $1 AND scheduled_at = $4 AND NOT EXISTS (SELECT 1 FROM t)`

// Claim claims the tick (job, scheduledAt) for this replica. It returns a
// Lease with Result Won or TakenOver; on a takeover the lease may be for an
// earlier tick of the job, whose owner died while running it. It returns a
// *NotDueError when the tick is later than the server's now(), ErrBusy when
// another tick of the job runs under a live lease and this replica recorded
// the tick skipped (see Skip), ErrMissed when the tick was marked missed,
// and a *LostError when another replica has the tick.
//
// Each of earlier that is older than MissedGrace by the server's clock and
// has no claim is marked missed and counted, unless the job has no claim
// before it: ticks before a job's first run ever are not missed. A replica
// that gets the tick checks them in the statement of its Finish, off the
// path to the job's start; the others check them before Claim returns.
func (c *Claimer) Claim(ctx context.Context, job string, scheduledAt time.Time, earlier ...time.Time) (*Lease, error) {
	return c.claimTick(ctx, job, scheduledAt, tickOpts{}, earlier)
}

// tickOpts are how a tick is claimed beyond Claim's default: its job's
// overlap policy (overlap.go), and whether it is a backfill's.
type tickOpts struct {
	overlap         jobs.Overlap // "" is skip
	backfill, rerun bool
}

func (c *Claimer) claimTick(ctx context.Context, job string, scheduledAt time.Time, o tickOpts, earlier []time.Time) (*Lease, error) {
	l, err := c.claim(ctx, job, scheduledAt, o)
	if l != nil {
		l.earlier = earlier
		return l, nil
	}
	if len(earlier) > 0 && ctx.Err() == nil {
		if merr := c.markMissed(ctx, job, earlier); merr != nil {
			c.logger.Warn("Cannot check for missed ticks", "job", job, "err", merr)
		}
	}
	return nil, err
}

func (c *Claimer) claim(ctx context.Context, job string, scheduledAt time.Time, o tickOpts) (*Lease, error) {
	lease := c.cfg.Lease.Microseconds()
	d, err := c.db(ctx)
	if err != nil {
		return nil, err
	}
	res, err := d.ExecContext(ctx, claimSQL, job, scheduledAt, c.cfg.Owner, lease)
	var n int64
	if err == nil {
		n, err = res.RowsAffected()
	}
	if err != nil {
		return nil, fmt.Errorf("cannot claim tick %s of job %q: %w", scheduledAt.Format(time.RFC3339), job, err)
	}
	if n == 1 {
		c.metrics.claims.WithLabelValues(job, string(Won)).Inc()
		return c.newLease(job, scheduledAt, 1, Won), nil
	}
	if o.backfill {
		if l, err := c.reclaimPast(ctx, job, scheduledAt, o.rerun); l != nil || err != nil {
			return l, err
		}
	}
	var took bool
	var tick time.Time
	var attempt int
	var owner, status string
	err = d.QueryRowContext(ctx, takeoverSQL, job, c.cfg.Owner, lease, scheduledAt).Scan(&took, &tick, &attempt, &owner, &status)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		// Not due (skip says so), or the insert conflicted with the
		// one-running-claim index.
		if o.overlap == jobs.OverlapBufferOne || o.overlap == jobs.OverlapReplace {
			return c.buffer(ctx, job, scheduledAt, o.overlap == jobs.OverlapReplace)
		}
		return nil, c.skip(ctx, job, scheduledAt)
	case err != nil:
		return nil, fmt.Errorf("cannot take over or read the claim of job %q: %w", job, err)
	case took:
		c.metrics.claims.WithLabelValues(job, string(TakenOver)).Inc()
		c.logger.Warn("Tick taken over: its lease ran out", "job", job, "scheduled_at", tick, "attempt", attempt)
		return c.newLease(job, tick, attempt, TakenOver), nil
	case status == "missed":
		return nil, fmt.Errorf("job %q, tick %s: %w", job, scheduledAt.Format(time.RFC3339), ErrMissed)
	}
	c.metrics.claims.WithLabelValues(job, string(Lost)).Inc()
	return nil, &LostError{Job: job, ScheduledAt: scheduledAt, Owner: owner, Status: status}
}

// skipSQL records a busy tick skipped, unless another replica has the tick
// already; the read sees the statement's snapshot, so an owner that won
// concurrently may read as "".
const skipSQL = `WITH s AS (
	INSERT INTO job_claims (job, scheduled_at, owner, attempt, lease_until, status, started_at, finished_at)
	SELECT $1, $2, $3, 0, now(), 'skipped', now(), now()
	WHERE $2 <= now()
	ON CONFLICT DO NOTHING
	RETURNING 1
)
SELECT EXISTS (SELECT 1 FROM s), $2 <= now(), now(),
	coalesce((SELECT owner FROM job_claims WHERE job = $1 AND scheduled_at = $2), ''),
	coalesce((SELECT status FROM job_claims WHERE job = $1 AND scheduled_at = $2), '')`

// Skip records the tick (job, scheduledAt) skipped, once across the
// replicas, because another run of the job is going: ErrBusy when this
// replica's 'skipped' row won the tick (the run is to be recorded skipped
// here), a *LostError when another replica has the tick, and a
// *NotDueError when the tick is not due by the server's clock. The
// Coordinator calls it for a tick that finds the job running on this
// replica; Claim calls it for one that finds it running elsewhere.
func (c *Claimer) Skip(ctx context.Context, job string, scheduledAt time.Time) error {
	return c.skip(ctx, job, scheduledAt)
}

func (c *Claimer) skip(ctx context.Context, job string, scheduledAt time.Time) error {
	d, err := c.db(ctx)
	if err != nil {
		return err
	}
	var won, due bool
	var now time.Time
	var owner, status string
	if err := d.QueryRowContext(ctx, skipSQL, job, scheduledAt, c.cfg.Owner).Scan(&won, &due, &now, &owner, &status); err != nil {
		return fmt.Errorf("cannot record tick %s of job %q skipped: %w", scheduledAt.Format(time.RFC3339), job, err)
	}
	switch {
	case won:
		c.metrics.claims.WithLabelValues(job, string(Skipped)).Inc()
		return fmt.Errorf("job %q, tick %s: %w", job, scheduledAt.Format(time.RFC3339), ErrBusy)
	case !due:
		return &NotDueError{Job: job, ScheduledAt: scheduledAt, Wait: scheduledAt.Sub(now)}
	}
	c.metrics.claims.WithLabelValues(job, string(Lost)).Inc()
	return &LostError{Job: job, ScheduledAt: scheduledAt, Owner: owner, Status: status}
}

// markMissed marks the unclaimed ones of ticks missed, and counts them.
func (c *Claimer) markMissed(ctx context.Context, job string, ticks []time.Time) error {
	d, err := c.db(ctx)
	if err != nil {
		return err
	}
	var n int64
	if err := d.QueryRowContext(ctx, markMissedSQL, job, c.cfg.Owner, ticks, c.cfg.MissedGrace.Microseconds()).
		Scan(&n); err != nil {
		return fmt.Errorf("cannot mark ticks of job %q missed: %w", job, err)
	}
	c.countMissed(job, n)
	return nil
}

func (c *Claimer) countMissed(job string, n int64) {
	if n > 0 {
		c.metrics.missed.WithLabelValues(job).Add(float64(n))
		c.logger.Warn("Ticks missed: no replica claimed them in time", "job", job, "ticks", n, "grace", c.cfg.MissedGrace)
	}
}

// takeOverExpiredSQL takes over every running claim of the jobs $3 whose
// lease has run out and whose owner is another replica (this replica's own
// runs learn of their loss from their renewer).
const takeOverExpiredSQL = `UPDATE job_claims
SET attempt = attempt + 1, owner = $1, lease_until = now() + $2 * interval '1 microsecond', started_at = now()
WHERE status = 'running' AND lease_until < now() AND owner <> $1 AND job = ANY($3::text[])
RETURNING job, scheduled_at, attempt`

// TakeOverExpired takes over the runs of the named jobs whose owner let
// their lease run out, without waiting for a tick of the job, and returns
// their leases. Replicas scanning at once take each run over once: the
// later updates queue on the row lock and find the lease renewed.
func (c *Claimer) TakeOverExpired(ctx context.Context, jobNames []string) ([]*Lease, error) {
	if len(jobNames) == 0 {
		return nil, nil
	}
	d, err := c.db(ctx)
	if err != nil {
		return nil, err
	}
	rows, err := d.QueryContext(ctx, takeOverExpiredSQL, c.cfg.Owner, c.cfg.Lease.Microseconds(), jobNames)
	if err != nil {
		return nil, fmt.Errorf("cannot take over expired claims: %w", err)
	}
	defer func() { _ = rows.Close() }()
	var out []*Lease
	for rows.Next() {
		var job string
		var tick time.Time
		var attempt int
		if err := rows.Scan(&job, &tick, &attempt); err != nil {
			return out, fmt.Errorf("cannot take over expired claims: %w", err)
		}
		out = append(out, c.newLease(job, tick, attempt, TakenOver))
	}
	if err := rows.Err(); err != nil {
		return out, fmt.Errorf("cannot take over expired claims: %w", err)
	}
	for _, l := range out {
		c.metrics.claims.WithLabelValues(l.Job, string(TakenOver)).Inc()
		c.logger.Warn("Run taken over: its owner's lease ran out", "job", l.Job, "scheduled_at", l.ScheduledAt, "attempt", l.Attempt)
	}
	return out, nil
}

// uniqueViolation is PostgreSQL's SQLSTATE unique_violation.
const uniqueViolation = "23505"

// reclaimSQL claims a tick again for a retry, after this owner's attempt
// failed; the attempt number goes up, so the earlier lease stays fenced.
const reclaimSQL = `UPDATE job_claims
SET status = 'running', attempt = attempt + 1, lease_until = now() + $4 * interval '1 microsecond',
	started_at = now(), finished_at = NULL, cancel_requested = NULL
WHERE job = $1 AND scheduled_at = $2 AND owner = $3 AND status = 'failed'
RETURNING attempt`

// Reclaim claims the tick (job, scheduledAt) again for a retry of this
// replica's failed run of it. It returns ErrFenced when the claim is not a
// failed one of this owner (another replica took it over meanwhile), and
// ErrBusy when another tick of the job is running now. A reclaim is not
// counted in worker_job_claims_total: the tick was won once.
func (c *Claimer) Reclaim(ctx context.Context, job string, scheduledAt time.Time) (*Lease, error) {
	d, err := c.db(ctx)
	if err != nil {
		return nil, err
	}
	var attempt int
	err = d.QueryRowContext(ctx, reclaimSQL, job, scheduledAt, c.cfg.Owner, c.cfg.Lease.Microseconds()).Scan(&attempt)
	var pe *pgconn.PgError
	switch {
	case err == nil:
		return c.newLease(job, scheduledAt, attempt, Won), nil
	case errors.Is(err, sql.ErrNoRows):
		return nil, fmt.Errorf("job %q, tick %s, owner %s: %w", job, scheduledAt.Format(time.RFC3339), c.cfg.Owner, ErrFenced)
	case errors.As(err, &pe) && pe.Code == uniqueViolation:
		return nil, fmt.Errorf("job %q, tick %s: %w", job, scheduledAt.Format(time.RFC3339), ErrBusy)
	}
	return nil, fmt.Errorf("cannot claim tick %s of job %q again: %w", scheduledAt.Format(time.RFC3339), job, err)
}

// LostError is the error of a Claim of a tick that another replica has.
type LostError struct {
	Job         string
	ScheduledAt time.Time
	Owner       string // the replica that has the tick
	Status      string // running, succeeded, failed or skipped; "" when it could not be read
}

func (e *LostError) Error() string {
	return fmt.Sprintf("tick %s of job %q is %s's (%s)", e.ScheduledAt.Format(time.RFC3339), e.Job, e.Owner, e.Status)
}

// MeasureOffset measures and exports the server's clock minus this
// replica's, taking the local time as the midpoint of the round trip.
func (c *Claimer) MeasureOffset(ctx context.Context) (time.Duration, error) {
	d, err := c.db(ctx)
	if err != nil {
		return 0, err
	}
	t0 := c.now()
	var server time.Time
	if err := d.QueryRowContext(ctx, `SELECT clock_timestamp()`).Scan(&server); err != nil {
		return 0, fmt.Errorf("cannot read the server's clock: %w", err)
	}
	return c.observeOffset(t0, c.now(), server), nil
}

func (c *Claimer) observeOffset(t0, t1, server time.Time) time.Duration {
	mid := t0.Add(t1.Sub(t0) / 2)
	d := server.Sub(mid)
	c.metrics.offset.Set(d.Seconds())
	return d
}

// Lease is this replica's hold on a claimed tick. Hold renews it in the
// background; Finish records the run's outcome. Renew and Finish are fenced
// by owner and attempt.
type Lease struct {
	Job         string
	ScheduledAt time.Time
	Attempt     int
	Result      Result // Won or TakenOver

	c        *Claimer
	earlier  []time.Time // to check for missed ticks at Finish
	lostOnce sync.Once

	mu       sync.Mutex
	stop     context.CancelFunc // stops the renewer; nil until Hold
	wg       sync.WaitGroup
	finished bool
}

func (c *Claimer) newLease(job string, tick time.Time, attempt int, r Result) *Lease {
	return &Lease{Job: job, ScheduledAt: tick, Attempt: attempt, Result: r, c: c}
}

// Renew extends the lease by the Claimer's Lease from the server's now().
// It returns ErrFenced, and counts the lease as lost, when the claim is no
// longer this owner's and attempt's, no longer running, or its lease has run
// out: another replica may be taking it over at this moment, so a lease is
// never revived. When a tick of the job under OverlapReplace asked for the
// run to stop (cancel_requested), it renews the lease and returns an error
// wrapping jobs.ErrReplaced: Hold then cancels the run with that cause. (Finish, by contrast, is accepted after the lease ran out
// as long as no one took the tick over: the run is done and still the only
// one.)
func (l *Lease) Renew(ctx context.Context) error {
	d, err := l.c.db(ctx)
	if err != nil {
		return err
	}
	var replaced bool
	err = d.QueryRowContext(ctx, `UPDATE job_claims SET lease_until = now() + $5 * interval '1 microsecond'
WHERE job = $1 AND scheduled_at = $2 AND owner = $3 AND attempt = $4 AND status = 'running' AND lease_until >= now()
RETURNING cancel_requested IS NOT NULL`,
		l.Job, l.ScheduledAt, l.c.cfg.Owner, l.Attempt, l.c.cfg.Lease.Microseconds()).Scan(&replaced)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		l.lost()
		return l.fenced()
	case err != nil:
		return fmt.Errorf("cannot renew the lease of job %q: %w", l.Job, err)
	case replaced:
		return fmt.Errorf("job %q, tick %s: lease renewed, but another replica's tick asks for the run to stop: %w",
			l.Job, l.ScheduledAt.Format(time.RFC3339), jobs.ErrReplaced)
	}
	return nil
}

func (l *Lease) fenced() error {
	return fmt.Errorf("job %q, tick %s, attempt %d, owner %s: %w", l.Job, l.ScheduledAt.Format(time.RFC3339), l.Attempt, l.c.cfg.Owner, ErrFenced)
}

// refused counts and logs a finish, as status, that the fencing refused.
func (l *Lease) refused(status string) {
	l.lost()
	l.c.metrics.fenced.WithLabelValues(l.Job).Inc()
	l.c.logger.Error("Finish refused: the tick was taken over", "job", l.Job, "scheduled_at", l.ScheduledAt,
		"attempt", l.Attempt, "owner", l.c.cfg.Owner, "status", status)
}

// lost counts the lease as lost, once.
func (l *Lease) lost() {
	l.lostOnce.Do(func() {
		l.c.metrics.leasesLost.WithLabelValues(l.Job).Inc()
		l.c.logger.Warn("Lease lost", "job", l.Job, "scheduled_at", l.ScheduledAt, "attempt", l.Attempt)
	})
}

// Hold starts renewing the lease every Lease/3 and returns a context derived
// from ctx for the run. The context is cancelled, with cause ErrLeaseLost, as
// soon as a renewal is refused, or when no renewal has succeeded for a whole
// lease (the database is unreachable, so another replica may take over).
// Renewals also stop when ctx is done (the scheduler's shutdown cancels
// it), so that a body that ignores its cancelled context does not keep the
// lease for ever: another replica takes the run over once the lease has run
// out. Finish stops the renewer. Call Hold at most once.
func (l *Lease) Hold(ctx context.Context) context.Context {
	runCtx, cancelRun := context.WithCancelCause(ctx)
	renewCtx, stop := context.WithCancel(ctx)
	l.mu.Lock()
	if l.finished || l.stop != nil {
		l.mu.Unlock()
		stop()
		cancelRun(errors.New("lease already held or finished"))
		return runCtx
	}
	l.stop = func() { stop(); cancelRun(context.Canceled) }
	l.wg.Go(func() { l.renew(renewCtx, cancelRun) })
	l.mu.Unlock()
	return runCtx
}

func (l *Lease) renew(ctx context.Context, cancelRun context.CancelCauseFunc) {
	every := l.c.cfg.Lease / 3
	t := time.NewTicker(every)
	defer t.Stop()
	confirmed := time.Now() // a renewal's send: the lease ends no earlier than this plus Lease
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		sent := time.Now()
		rctx, cancel := context.WithTimeout(ctx, every)
		err := l.Renew(rctx)
		cancel()
		switch {
		case err == nil:
			confirmed = sent
		case errors.Is(err, jobs.ErrReplaced):
			// Renewed: the run goes on, cancelled, until it returns.
			confirmed = sent
			cancelRun(jobs.ErrReplaced)
		case errors.Is(err, ErrFenced):
			cancelRun(ErrLeaseLost)
			return
		case ctx.Err() != nil:
			return
		default:
			l.c.logger.Warn("Cannot renew lease", "job", l.Job, "err", err)
			if time.Since(confirmed) >= l.c.cfg.Lease {
				l.lost()
				cancelRun(fmt.Errorf("%w: not renewed for %s: %w", ErrLeaseLost, l.c.cfg.Lease, err))
				return
			}
		}
	}
}

// Abandon stops the renewer and ends the lease now, leaving the claim
// running, so that another replica takes the run over at once instead of
// after the lease: for a run cut off by this replica's shutdown or by the
// loss of its lease. It is a finish too: when the claim is no longer this
// owner's and attempt's it returns ErrFenced, and counts and logs it.
func (l *Lease) Abandon(ctx context.Context) error {
	l.stopRenewing()
	d, err := l.c.db(ctx)
	if err != nil {
		return err
	}
	res, err := d.ExecContext(ctx, `UPDATE job_claims SET lease_until = now() - interval '1 microsecond'
WHERE job = $1 AND scheduled_at = $2 AND owner = $3 AND attempt = $4 AND status = 'running'`,
		l.Job, l.ScheduledAt, l.c.cfg.Owner, l.Attempt)
	if err != nil {
		return fmt.Errorf("cannot abandon the claim of job %q: %w", l.Job, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("cannot abandon the claim of job %q: %w", l.Job, err)
	} else if n == 0 {
		l.refused("abandon")
		return l.fenced()
	}
	l.c.logger.Info("Run abandoned to another replica", "job", l.Job, "scheduled_at", l.ScheduledAt, "attempt", l.Attempt)
	return nil
}

// stopRenewing stops the renewer of Hold, if any, and waits for it.
func (l *Lease) stopRenewing() {
	l.mu.Lock()
	l.finished = true
	stop := l.stop
	l.mu.Unlock()
	if stop != nil {
		stop()
		l.wg.Wait()
	}
}

// Finish stops the renewer and records the run as succeeded or failed. It
// returns ErrFenced, counts the refused finish and logs it, when the claim is
// no longer this owner's and attempt's: another replica took the tick over,
// and this run's outcome must not count.
func (l *Lease) Finish(ctx context.Context, success bool) error {
	return l.finish(ctx, success, nil)
}

// FinishRecording is Finish that also writes row, the run's job_runs row,
// in the same statement, when the finish is accepted: so a row is written
// exactly when the claim is finished, and a fenced run writes none (its
// caller records it as a failure). It returns nil when it wrote the row.
func (l *Lease) FinishRecording(ctx context.Context, success bool, row jobhistory.RunRow) error {
	return l.finish(ctx, success, &row)
}

func (l *Lease) finish(ctx context.Context, success bool, row *jobhistory.RunRow) error {
	l.stopRenewing()
	status := "failed"
	if success {
		status = "succeeded"
	}
	var done bool
	var missed int64
	checking, recording := 0, 0
	args := []any{l.Job, l.ScheduledAt, l.c.cfg.Owner, l.Attempt, status}
	if len(l.earlier) > 0 {
		checking, args = 1, append(args, l.earlier, l.c.cfg.MissedGrace.Microseconds())
	}
	if row != nil {
		recording, args = 1, append(args, jobhistory.RunArgs(*row)...)
	}
	d, err := l.c.db(ctx)
	if err != nil {
		return err
	}
	q := finishSQLs[checking][recording]
	if checking == 1 {
		err = d.QueryRowContext(ctx, q, args...).Scan(&done, &missed)
	} else {
		var res sql.Result
		var n int64
		if res, err = d.ExecContext(ctx, q, args...); err == nil {
			n, err = res.RowsAffected()
		}
		done = n == 1
	}
	if err != nil {
		return fmt.Errorf("cannot finish the claim of job %q: %w", l.Job, err)
	}
	l.c.countMissed(l.Job, missed)
	if !done {
		l.refused(status)
		return l.fenced()
	}
	return nil
}
