package claim_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/robfig/cron/v3"

	"github.com/sqlworker/worker/internal/claim"
	"github.com/sqlworker/worker/internal/jobs"
)

// once is a schedule with one tick, at.
type once time.Time

func (o once) Next(t time.Time) time.Time {
	if at := time.Time(o); t.Before(at) {
		return at
	}
	return t.Add(1000 * time.Hour)
}

// waitSucceeded waits up to 30 s until job_claims has n succeeded ticks,
// of owner unless it is "".
func waitSucceeded(t *testing.T, db *sql.DB, n int, owner string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for got := 0; got < n; {
		if err := db.QueryRow(`SELECT count(*) FROM job_claims WHERE status = 'succeeded' AND ($1 = '' OR owner = $1)`, owner).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("succeeded ticks of %q: got %v after 30s, want %v", owner, got, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// handle is the jobs.Initer of a replica on PostgreSQL.
type handle struct{ db *sql.DB }

func (h handle) Init(context.Context) (*sql.DB, error) { return h.db, nil }

// Ensure that schedulers on three replicas, coordinated by claims, run each
// tick of a job once: the bodies that ran are the succeeded claims, every
// tick has one winner and two losers, and no tick is missed.
func TestCoordinator_SchedulersRunEachTickOnce(t *testing.T) {
	t.Parallel()
	dsn := server(t)
	ctx := context.Background()
	db := open(t, dsn)
	if _, err := db.Exec(`CREATE TABLE bodies (owner text NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	const replicas = 3
	cs := make([]*claim.Claimer, replicas)
	ss := make([]*jobs.Scheduler, replicas)
	for i := range replicas {
		owner := fmt.Sprintf("replica-%d", i)
		c := replica(t, dsn, owner, claim.Config{MissedGrace: 2 * time.Second})
		s := coordinated(t, dsn, c, jobs.Config{
			Registerer: prometheus.NewRegistry(),
		}, jobs.Job{
			Name:            "tick",
			Schedule:        cron.Every(time.Second),
			OmitSuccessRows: true,
			Func: func(ctx context.Context, db *sql.DB) (int64, error) {
				_, err := db.ExecContext(ctx, `INSERT INTO bodies VALUES ($1)`, owner)
				return 1, err
			},
		})
		cs[i], ss[i] = c, s
	}
	for _, s := range ss {
		if err := s.Start(); err != nil {
			t.Fatal(err)
		}
	}
	// Wait for four ticks, beyond the missed grace.
	waitSucceeded(t, db, 4, "")
	for _, s := range ss {
		if err := s.Stop(ctx); err != nil {
			t.Errorf("Stop: %v", err)
		}
	}

	var bodies, succeeded, other int
	if err := db.QueryRow(`SELECT (SELECT count(*) FROM bodies),
		(SELECT count(*) FROM job_claims WHERE status = 'succeeded' AND attempt = 1),
		(SELECT count(*) FROM job_claims WHERE status <> 'succeeded' OR attempt <> 1 OR started_at < scheduled_at)`).
		Scan(&bodies, &succeeded, &other); err != nil {
		t.Fatal(err)
	}
	if bodies != succeeded || other != 0 {
		t.Errorf("bodies run %v, succeeded first attempts %v, other or early claims %v: want bodies = succeeded, no other", bodies, succeeded, other)
	}
	var won, lost, missed float64
	for _, c := range cs {
		won += testutil.ToFloat64(claim.Claims(c, "tick", claim.Won))
		lost += testutil.ToFloat64(claim.Claims(c, "tick", claim.Lost))
		missed += testutil.ToFloat64(claim.TicksMissed(c, "tick"))
	}
	if won != float64(succeeded) {
		t.Errorf("claims won: got %v, want %v (the succeeded ticks)", won, succeeded)
	}
	// A replica can be stopped just before a tick the others still run.
	if lost < 2*won-4 || lost > 2*won {
		t.Errorf("claims lost: got %v, want about %v (two replicas lose each tick)", lost, 2*won)
	}
	if missed != 0 {
		t.Errorf("ticks missed: got %v, want 0", missed)
	}
}

// Ensure that a run whose tick is taken over has its context cancelled by
// the lost lease, and is recorded as a failure whose finish was fenced,
// never as a success.
func TestCoordinator_TakenOverRunIsCancelledAndFenced(t *testing.T) {
	t.Parallel()
	dsn := server(t)
	ctx := context.Background()
	db := open(t, dsn)
	a := replica(t, dsn, "a", claim.Config{Lease: 1500 * time.Millisecond})
	b := replica(t, dsn, "b", claim.Config{})
	started, takenOver := make(chan struct{}, 1), make(chan struct{})
	finished := make(chan *jobs.Run, 16)
	s := coordinated(t, dsn, a, jobs.Config{
		OnFinish: func(r *jobs.Run, _ error) { finished <- r },
	}, jobs.Job{
		Name:     "hang",
		Schedule: cron.Every(time.Second),
		Func: func(ctx context.Context, _ *sql.DB) (int64, error) {
			select {
			case started <- struct{}{}:
			default:
			}
			<-ctx.Done()
			<-takenOver // so that its finish comes after b's takeover
			return 0, ctx.Err()
		},
	})
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	// The history has no job_runs table here: Stop's error is about that.
	defer func() { _ = s.Stop(ctx) }()
	var release sync.Once
	defer release.Do(func() { close(takenOver) }) // before Stop, should the test fail early
	<-started
	var tick time.Time
	if err := db.QueryRow(`SELECT scheduled_at FROM job_claims WHERE job = 'hang' AND status = 'running'`).Scan(&tick); err != nil {
		t.Fatal(err)
	}
	expire(t, db, "hang")
	if l, err := b.Claim(ctx, "hang", tick); err != nil || l.Attempt != 2 {
		t.Fatalf("b's takeover: got %v, %v, want attempt 2", l, err)
	}
	release.Do(func() { close(takenOver) })
	for r := range finished {
		if r.Result == jobs.Skipped {
			continue // later ticks, while the first one hangs
		}
		if !r.ScheduledAt.Equal(tick) || r.Result != jobs.Failure || !errors.Is(r.Err, claim.ErrLeaseLost) || !errors.Is(r.Err, claim.ErrFenced) {
			t.Errorf("run: got %v %v %v, want tick %v failed with a lost lease and a fenced finish", r.ScheduledAt, r.Result, r.Err, tick)
		}
		break
	}
	if got := testutil.ToFloat64(claim.FencedFinishes(a, "hang")); got != 1 {
		t.Errorf("fenced finishes: got %v, want 1", got)
	}
	if got := testutil.ToFloat64(claim.LeasesLost(a, "hang")); got != 1 {
		t.Errorf("leases lost: got %v, want 1", got)
	}
}

// Ensure that a run asked for by hand (RunOnce, the admin API's run-now) is
// claimed at its own time, so that one run of a job goes at a time across
// replicas (issue 18): while replica a runs it, a run-now on replica b is
// skipped; a's run succeeds, with one claim row at its time.
func TestCoordinator_RunOnceClaimed(t *testing.T) {
	t.Parallel()
	dsn := server(t)
	entered, release := make(chan struct{}), make(chan struct{})
	job := func(body jobs.Func) jobs.Job {
		return jobs.Job{Name: "manual", Schedule: cron.Every(time.Hour), Func: body}
	}
	a := coordinated(t, dsn, replica(t, dsn, "a", claim.Config{}), jobs.Config{}, job(func(context.Context, *sql.DB) (int64, error) {
		close(entered)
		<-release
		return 0, nil
	}))
	defer func() { _ = a.Stop(context.Background()) }()
	ranB := 0
	b := coordinated(t, dsn, replica(t, dsn, "b", claim.Config{}), jobs.Config{}, job(func(context.Context, *sql.DB) (int64, error) {
		ranB++
		return 0, nil
	}))
	defer func() { _ = b.Stop(context.Background()) }()

	done := make(chan *jobs.Run, 1)
	go func() {
		r, err := a.RunOnce("manual")
		if err != nil {
			t.Error(err)
			r = &jobs.Run{}
		}
		done <- r
	}()
	<-entered
	rb, err := b.RunOnce("manual")
	if err != nil {
		t.Fatal(err)
	}
	if rb.Result != jobs.Skipped || ranB != 0 {
		t.Errorf("run-now on b while a runs the job: got %v, %d bodies, want skipped, 0", rb.Result, ranB)
	}
	close(release)
	ra := <-done
	if ra.Result != jobs.Success {
		t.Errorf("run-now on a: got %v (%v), want success", ra.Result, ra.Err)
	}
	var claims int
	var at time.Time
	if err := open(t, dsn).QueryRow(`SELECT count(*), max(scheduled_at) FROM job_claims WHERE status = 'succeeded'`).Scan(&claims, &at); err != nil {
		t.Fatal(err)
	}
	if claims != 1 || !at.Equal(ra.ScheduledAt.Truncate(time.Microsecond)) {
		t.Errorf("succeeded claims: got %d at %v, want 1 at the run's time %v", claims, at, ra.ScheduledAt)
	}
}

// Ensure that a PerReplica job (the heartbeat) runs every tick on every
// replica, never claimed: each replica's liveness is its own.
func TestCoordinator_PerReplicaIsNotClaimed(t *testing.T) {
	t.Parallel()
	dsn := server(t)
	db := open(t, dsn)
	if _, err := db.Exec(`CREATE TABLE beats (owner text NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	var ss []*jobs.Scheduler
	for _, owner := range []string{"a", "b"} {
		c := replica(t, dsn, owner, claim.Config{})
		ss = append(ss, coordinated(t, dsn, c, jobs.Config{Registerer: prometheus.NewRegistry()}, jobs.Job{
			Name:            "beat",
			Schedule:        cron.Every(time.Second),
			PerReplica:      true,
			OmitSuccessRows: true,
			Func: func(ctx context.Context, db *sql.DB) (int64, error) {
				_, err := db.ExecContext(ctx, `INSERT INTO beats VALUES ($1)`, owner)
				return 1, err
			},
		}))
	}
	for _, s := range ss {
		if err := s.Start(); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		var a, b int
		if err := db.QueryRow(`SELECT count(*) FILTER (WHERE owner = 'a'), count(*) FILTER (WHERE owner = 'b') FROM beats`).Scan(&a, &b); err != nil {
			t.Fatal(err)
		}
		if a >= 3 && b >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("beats of replicas a and b: got %d and %d after 30s, want 3 each", a, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, s := range ss {
		if err := s.Stop(context.Background()); err != nil {
			t.Errorf("Stop: %v", err)
		}
	}
	var claims int
	if err := db.QueryRow(`SELECT count(*) FROM job_claims`).Scan(&claims); err != nil {
		t.Fatal(err)
	}
	if claims != 0 {
		t.Errorf("claims: got %v, want 0", claims)
	}
}

// Ensure that a run left by a dead replica is taken over by the scan of a
// live one long before the job's next tick, runs there, and succeeds with
// attempt 2.
func TestCoordinator_ScanTakesOverBetweenTicks(t *testing.T) {
	t.Parallel()
	dsn := server(t)
	ctx := context.Background()
	db := open(t, dsn)
	dead := replica(t, dsn, "dead", claim.Config{})
	tick := time.Now().Add(-time.Minute).Truncate(time.Second)
	if _, err := dead.Claim(ctx, "daily", tick); err != nil {
		t.Fatal(err)
	}
	expire(t, db, "daily")

	live := replica(t, dsn, "live", claim.Config{Lease: 1500 * time.Millisecond})
	finished := make(chan *jobs.Run, 1)
	s := coordinated(t, dsn, live, jobs.Config{
		OnFinish: func(r *jobs.Run, _ error) { finished <- r },
	}, jobs.Job{
		Name:            "daily",
		Schedule:        cron.Every(24 * time.Hour),
		OmitSuccessRows: true,
		Func:            func(context.Context, *sql.DB) (int64, error) { return 1, nil },
	})
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	var r *jobs.Run
	select {
	case r = <-finished:
	case <-time.After(30 * time.Second):
		t.Fatal("no run 30s after start, want the dead replica's taken over")
	}
	if err := s.Stop(ctx); err != nil {
		t.Errorf("Stop: %v", err)
	}
	if !r.ScheduledAt.Equal(tick) || r.Result != jobs.Success {
		t.Errorf("run: got %v %v (%v), want tick %v, success", r.ScheduledAt, r.Result, r.Err, tick)
	}
	if got, _ := readRow(t, db, "daily", tick); got != (row{"live", "succeeded", 2}) {
		t.Errorf("row: got %+v, want live's succeeded attempt 2", got)
	}
	if got := testutil.ToFloat64(claim.Claims(live, "daily", claim.TakenOver)); got != 1 {
		t.Errorf("claims taken over: got %v, want 1", got)
	}
}

// Ensure that a run cut off by Stop is handed on: its claim stays running
// with its lease ended, so that another replica takes it over at once.
func TestCoordinator_StopHandsTheRunOn(t *testing.T) {
	t.Parallel()
	dsn := server(t)
	ctx := context.Background()
	db := open(t, dsn)
	a := replica(t, dsn, "a", claim.Config{})
	b := replica(t, dsn, "b", claim.Config{})
	started := make(chan struct{}, 1)
	s := coordinated(t, dsn, a, jobs.Config{
		ShutdownGrace: 100 * time.Millisecond,
	}, jobs.Job{
		Name:     "long",
		Schedule: cron.Every(time.Second),
		Func: func(ctx context.Context, _ *sql.DB) (int64, error) {
			select {
			case started <- struct{}{}:
			default:
			}
			<-ctx.Done()
			return 0, ctx.Err()
		},
	})
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	<-started
	_ = s.Stop(ctx) // the history has no job_runs table here: Stop's error is about that
	var expired bool
	var r row
	if err := db.QueryRow(`SELECT owner, status, attempt, lease_until <= now() FROM job_claims WHERE job = 'long'`).
		Scan(&r.owner, &r.status, &r.attempt, &expired); err != nil {
		t.Fatal(err)
	}
	if r != (row{"a", "running", 1}) || !expired {
		t.Errorf("claim after Stop: got %+v, lease ended %v; want a's running attempt 1, lease ended", r, expired)
	}
	ls, err := b.TakeOverExpired(ctx, []string{"long"})
	if err != nil {
		t.Fatal(err)
	}
	if len(ls) != 1 || ls[0].Attempt != 2 {
		t.Fatalf("b's takeover: got %v, want one lease of attempt 2", ls)
	}
	if err := ls[0].Finish(ctx, true); err != nil {
		t.Fatal(err)
	}
}

// Ensure that a replica whose clock runs ahead, and so asks for a tick
// early, waits for the server's clock and never starts the tick before it.
func TestCoordinator_WaitsForTheServerClock(t *testing.T) {
	t.Parallel()
	dsn := server(t)
	ctx := context.Background()
	c := replica(t, dsn, "ahead", claim.Config{})
	co := claim.NewCoordinator(c, []string{"early"})
	tick := time.Now().Add(1500 * time.Millisecond).Truncate(time.Millisecond)
	cl, err := co.Acquire(ctx, jobs.Tick{Job: "early", ScheduledAt: tick})
	if err != nil {
		t.Fatal(err)
	}
	var early bool
	if err := open(t, dsn).QueryRow(`SELECT started_at < scheduled_at FROM job_claims WHERE job = 'early'`).Scan(&early); err != nil {
		t.Fatal(err)
	}
	if early {
		t.Error("claim started before its tick by the server's clock")
	}
	if err := cl.Release(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(claim.Claims(c, "early", claim.Won)); got != 1 {
		t.Errorf("claims won: got %v, want 1", got)
	}
}

// Ensure that a skip of a paused job's tick not due by the server's clock
// yet (a replica whose clock runs ahead) waits for the tick, and records
// it skipped, rather than leave it to replicas that may all skip it too;
// and that a tick skipped because the job runs here is left to the other
// replicas, which may run it (TestReplicas_ClockSkew).
func TestCoordinator_SkipWaitsForTheServerClock(t *testing.T) {
	t.Parallel()
	dsn := server(t)
	c := replica(t, dsn, "ahead", claim.Config{})
	co := claim.NewCoordinator(c, []string{"paused", "busy"})
	// A tick skipped because the job runs here is not waited for: another
	// replica, whose clock is not ahead, may run it.
	busy := time.Now().Add(500 * time.Millisecond).Truncate(time.Millisecond)
	if err := co.Skip(context.Background(), jobs.Tick{Job: "busy", ScheduledAt: busy}); !errors.Is(err, jobs.ErrNotClaimed) {
		t.Fatalf("Skip of a busy tick 500 ms ahead: got %v, want it left to the others (ErrNotClaimed)", err)
	}
	tick := time.Now().Add(500 * time.Millisecond).Truncate(time.Millisecond)
	if err := co.Skip(context.Background(), jobs.Tick{Job: "paused", ScheduledAt: tick, Paused: true}); !errors.Is(err, jobs.ErrSkipped) {
		t.Fatalf("Skip of a paused tick 500 ms ahead: got %v, want it recorded skipped here (ErrSkipped)", err)
	}
	var status string
	var early bool
	if err := open(t, dsn).QueryRow(`SELECT status, started_at < scheduled_at FROM job_claims WHERE job = 'paused'`).Scan(&status, &early); err != nil {
		t.Fatal(err)
	}
	if status != "skipped" || early {
		t.Errorf("claim row: got status %q, before its tick %v; want skipped, not before", status, early)
	}
	var n int
	if err := open(t, dsn).QueryRow(`SELECT count(*) FROM job_claims WHERE job = 'busy'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("claim rows of the busy tick: got %d, want 0", n)
	}
}

// Ensure that a scheduler counts the tick that no replica ran before it
// started, once, and none of the ticks it ran.
func TestCoordinator_CountsMissedTicks(t *testing.T) {
	t.Parallel()
	dsn := server(t)
	ctx := context.Background()
	db := open(t, dsn)
	// The job ran long ago, so its later ticks can be missed.
	if _, err := db.Exec(`INSERT INTO job_claims (job, scheduled_at, owner, attempt, lease_until, status, started_at)
		VALUES ('gap', date_trunc('second', now()) - interval '1 hour', 'old', 1, now(), 'succeeded', now())`); err != nil {
		t.Fatal(err)
	}
	c := replica(t, dsn, "a", claim.Config{MissedGrace: time.Second})
	s := coordinated(t, dsn, c, jobs.Config{}, jobs.Job{
		Name:            "gap",
		Schedule:        cron.Every(time.Second),
		OmitSuccessRows: true,
		Func:            func(context.Context, *sql.DB) (int64, error) { return 0, nil },
	})
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	waitSucceeded(t, db, 4, "a")
	if err := s.Stop(ctx); err != nil {
		t.Errorf("Stop: %v", err)
	}
	// Before its first run, exactly the tick before it is missed. A tick
	// after it is missed only if its claim came later than the grace (a
	// machine under load): then it did not run, and it is counted too.
	var missed, first time.Time
	var before, all int
	if err := db.QueryRow(`SELECT (SELECT min(scheduled_at) FROM job_claims WHERE status = 'missed'),
		(SELECT min(scheduled_at) FROM job_claims WHERE owner = 'a' AND status = 'succeeded'),
		(SELECT count(*) FROM job_claims WHERE status = 'missed'
			AND scheduled_at < (SELECT min(scheduled_at) FROM job_claims WHERE owner = 'a' AND status = 'succeeded')),
		(SELECT count(*) FROM job_claims WHERE status = 'missed')`).Scan(&missed, &first, &before, &all); err != nil {
		t.Fatalf("missed ticks: %v", err)
	}
	if want := first.Add(-time.Second); before != 1 || !missed.Equal(want) {
		t.Errorf("missed ticks before the first run: got %d, the first at %v; want 1, at %v (the one before the first run)", before, missed, want)
	}
	if got := testutil.ToFloat64(claim.TicksMissed(c, "gap")); got != float64(all) {
		t.Errorf("ticks missed: got %v, want %d, the missed rows", got, all)
	}
}

// Ensure that a run whose lease ran out before anyone took it over is
// cancelled and handed on, not recorded as a failed tick: another replica
// then runs it.
func TestCoordinator_LostLeaseIsHandedOn(t *testing.T) {
	t.Parallel()
	dsn := server(t)
	ctx := context.Background()
	db := open(t, dsn)
	a := replica(t, dsn, "a", claim.Config{Lease: 1500 * time.Millisecond})
	b := replica(t, dsn, "b", claim.Config{})
	started := make(chan struct{}, 1)
	finished := make(chan *jobs.Run, 16)
	s := coordinated(t, dsn, a, jobs.Config{
		OnFinish: func(r *jobs.Run, _ error) { finished <- r },
	}, jobs.Job{
		Name: "hang",
		// One tick only: a's next tick would take its own claim back.
		Schedule: once(time.Now().Add(time.Second).Truncate(time.Second)),
		Func: func(ctx context.Context, _ *sql.DB) (int64, error) {
			select {
			case started <- struct{}{}:
			default:
			}
			<-ctx.Done()
			return 0, ctx.Err()
		},
	})
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Stop(ctx) }() // the history has no job_runs table here
	<-started
	var tick time.Time
	if err := db.QueryRow(`SELECT scheduled_at FROM job_claims WHERE job = 'hang' AND status = 'running'`).Scan(&tick); err != nil {
		t.Fatal(err)
	}
	expire(t, db, "hang") // a's next renewal is refused
	r := <-finished
	if !r.ScheduledAt.Equal(tick) || r.Result != jobs.Failure || !errors.Is(r.Err, claim.ErrLeaseLost) || errors.Is(r.Err, claim.ErrFenced) {
		t.Errorf("run: got %v %v %v, want tick %v failed with a lost lease, not fenced", r.ScheduledAt, r.Result, r.Err, tick)
	}
	if got, _ := readRow(t, db, "hang", tick); got != (row{"a", "running", 1}) {
		t.Errorf("claim after a's run: got %+v, want a's running attempt 1, to hand on", got)
	}
	ls, err := b.TakeOverExpired(ctx, []string{"hang"})
	if err != nil || len(ls) != 1 || !ls[0].ScheduledAt.Equal(tick) {
		t.Fatalf("b's takeover: got %v, %v, want the tick", ls, err)
	}
	if err := ls[0].Finish(ctx, true); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(claim.FencedFinishes(a, "hang")); got != 0 {
		t.Errorf("a's fenced finishes: got %v, want 0", got)
	}
	if got := testutil.ToFloat64(claim.LeasesLost(a, "hang")); got != 1 {
		t.Errorf("a's leases lost: got %v, want 1", got)
	}
}

// Ensure that a retry of a failed tick runs on the replica that failed it,
// claiming the tick again, and that the tick then has one success.
func TestCoordinator_RetryClaimsItsTickAgain(t *testing.T) {
	t.Parallel()
	dsn := server(t)
	ctx := context.Background()
	db := open(t, dsn)
	c := replica(t, dsn, "a", claim.Config{})
	finished := make(chan *jobs.Run, 4)
	calls := 0
	s := coordinated(t, dsn, c, jobs.Config{
		OnFinish: func(r *jobs.Run, _ error) { finished <- r },
	}, jobs.Job{
		Name:            "flaky",
		Schedule:        once(time.Now().Add(time.Second).Truncate(time.Second)),
		Retries:         2,
		RetryBackoff:    50 * time.Millisecond,
		OmitSuccessRows: true,
		Func: func(context.Context, *sql.DB) (int64, error) {
			if calls++; calls == 1 {
				return 0, jobs.MarkRetryable(errors.New("down for a moment"))
			}
			return 1, nil
		},
	})
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Stop(ctx) }() // the history has no job_runs table here: the failed attempt's row is held
	var last *jobs.Run
	for r := range finished {
		if last = r; r.Attempt >= 2 {
			break
		}
	}
	if last.Result != jobs.Success || calls != 2 {
		t.Errorf("retry: got attempt %v %v (%v), %d calls, want a success at the second call", last.Attempt, last.Result, last.Err, calls)
	}
	if got, _ := readRow(t, db, "flaky", last.ScheduledAt); got != (row{"a", "succeeded", 2}) {
		t.Errorf("row: got %+v, want a's succeeded attempt 2", got)
	}
}

// Ensure that ticks of a slow job on two replicas, which find the job
// running here or on the other replica, are each recorded once: every tick
// has one job_claims row, succeeded or skipped, the skipped runs recorded
// over both schedulers are the skipped rows, and no tick is missed.
func TestCoordinator_BusyTickSkippedOnce(t *testing.T) {
	t.Parallel()
	dsn := server(t)
	ctx := context.Background()
	db := open(t, dsn)
	// The skipped runs' history.
	if _, err := db.Exec(`CREATE TABLE job_runs (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
		job text NOT NULL, scheduled_at timestamptz NOT NULL, started_at timestamptz NOT NULL, ended_at timestamptz NOT NULL,
		result text NOT NULL, error text NOT NULL DEFAULT '', rows_affected bigint NOT NULL DEFAULT 0,
		attempt integer NOT NULL DEFAULT 1, jitter_ms bigint NOT NULL DEFAULT 0)`); err != nil {
		t.Fatal(err)
	}
	const replicas = 2
	cs := make([]*claim.Claimer, replicas)
	ss := make([]*jobs.Scheduler, replicas)
	var mu sync.Mutex
	results := map[jobs.Result]int{}
	for i := range replicas {
		c := replica(t, dsn, fmt.Sprintf("replica-%d", i), claim.Config{MissedGrace: 2 * time.Second})
		s := coordinated(t, dsn, c, jobs.Config{
			Registerer: prometheus.NewRegistry(),
			OnFinish: func(r *jobs.Run, _ error) {
				mu.Lock()
				results[r.Result]++
				mu.Unlock()
			},
		}, jobs.Job{
			Name:            "slow",
			Schedule:        cron.Every(time.Second),
			OmitSuccessRows: true,
			Func: func(ctx context.Context, db *sql.DB) (int64, error) {
				_, err := db.ExecContext(ctx, `SELECT pg_sleep(1.5)`)
				return 0, err
			},
		})
		cs[i], ss[i] = c, s
	}
	for _, s := range ss {
		if err := s.Start(); err != nil {
			t.Fatal(err)
		}
	}
	waitSucceeded(t, db, 3, "")
	for _, s := range ss {
		if err := s.Stop(ctx); err != nil {
			t.Errorf("Stop: %v", err)
		}
	}
	var first, last time.Time
	var rows, ticks, skipped, succeeded int
	if err := db.QueryRow(`SELECT min(scheduled_at), max(scheduled_at), count(*), count(DISTINCT scheduled_at),
		count(*) FILTER (WHERE status = 'skipped'), count(*) FILTER (WHERE status = 'succeeded')
		FROM job_claims WHERE job = 'slow'`).Scan(&first, &last, &rows, &ticks, &skipped, &succeeded); err != nil {
		t.Fatal(err)
	}
	if want := int(last.Sub(first)/time.Second) + 1; rows != want || ticks != want {
		t.Errorf("job_claims rows from %v to %v: got %d rows of %d ticks, want one for each of the %d ticks", first, last, rows, ticks, want)
	}
	if skipped == 0 || succeeded+skipped != rows {
		t.Errorf("rows: got %d succeeded, %d skipped of %d, want some skipped and no other", succeeded, skipped, rows)
	}
	mu.Lock()
	defer mu.Unlock()
	// Stop can cut off a run after its tick's row, or skip a tick after it.
	if got := results[jobs.Skipped]; got < skipped-replicas || got > skipped {
		t.Errorf("skipped runs recorded: got %d, want %d (one per skipped row)", got, skipped)
	}
	for _, c := range cs {
		if got := testutil.ToFloat64(claim.TicksMissed(c, "slow")); got != 0 {
			t.Errorf("%s's ticks missed: got %v, want 0", c.Owner(), got)
		}
	}
}

// Ensure that the Coordinator checks for a miss only the ticks it found no
// claim row for: those it won, lost or found busy cannot be missed, so with
// every replica up the finish marks nothing.
func TestCoordinator_ChecksOnlyTicksNotSeen(t *testing.T) {
	t.Parallel()
	dsn := server(t)
	ctx := context.Background()
	a := replica(t, dsn, "a", claim.Config{MissedGrace: 2 * time.Second})
	b := replica(t, dsn, "b", claim.Config{MissedGrace: 2 * time.Second})
	co := claim.NewCoordinator(a, []string{"seen"})
	every := cron.Every(time.Second)
	base := time.Now().Add(-time.Hour).Truncate(time.Second)
	at := func(s int) time.Time { return base.Add(time.Duration(s) * time.Second) }
	tick := func(s int) jobs.Tick { return jobs.Tick{Job: "seen", ScheduledAt: at(s), Schedule: every, Attempt: 1} }

	// a wins tick 0 and loses tick 1 to b; tick 2 finds the job busy.
	c0, err := co.Acquire(ctx, tick(0))
	if err != nil {
		t.Fatal(err)
	}
	if err := c0.Release(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Claim(ctx, "seen", at(1)); err != nil {
		t.Fatal(err)
	}
	if _, err := co.Acquire(ctx, tick(1)); !errors.Is(err, jobs.ErrNotClaimed) {
		t.Fatalf("tick 1, b's: got %v, want ErrNotClaimed", err)
	}
	if _, err := co.Acquire(ctx, tick(2)); !errors.Is(err, jobs.ErrSkipped) {
		t.Fatalf("tick 2, while b runs tick 1: got %v, want ErrSkipped", err)
	}
	// Ticks 3 and 4 are never asked about here. At tick 6, the ticks in
	// (tick 2 - grace, tick 6 - grace] are 1 to 4: 1 and 2 were seen.
	got := claim.Earlier(co, tick(6))
	if want := []time.Time{at(3), at(4)}; !slices.EqualFunc(got, want, time.Time.Equal) {
		t.Errorf("ticks checked at tick 6: got %v, want %v (those not seen)", got, want)
	}
}
