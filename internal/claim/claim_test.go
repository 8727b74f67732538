package claim_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/sqlworker/worker/internal/claim"
	"github.com/sqlworker/worker/internal/db"
	"github.com/sqlworker/worker/internal/jobs"
	"github.com/sqlworker/worker/internal/pgtest"
	"github.com/sqlworker/worker/internal/schema"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// server starts a PostgreSQL server with job_claims migrated, and returns
// its DSN.
func server(t testing.TB) string {
	t.Helper()
	dsn := pgtest.Start(t)
	db := open(t, dsn)
	if err := schema.MigrateClaims(context.Background(), db); err != nil {
		t.Fatal(err)
	}
	return dsn
}

// open opens a handle of its own on dsn, closed at cleanup, as a replica
// would.
func open(t testing.TB, dsn string) *sql.DB {
	t.Helper()
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(stdlib.GetConnector(*cfg))
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// replica returns a Claimer on a handle of its own, with its own registry.
func replica(t testing.TB, dsn, owner string, cfg claim.Config) *claim.Claimer {
	t.Helper()
	cfg.DB, cfg.Owner, cfg.Registerer = handle{open(t, dsn)}, owner, prometheus.NewRegistry()
	c, err := claim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// coordinated returns a scheduler of job on a handle of its own on dsn,
// coordinated by c as the worker's is, with cfg's other settings.
func coordinated(t *testing.T, dsn string, c *claim.Claimer, cfg jobs.Config, job jobs.Job) *jobs.Scheduler {
	t.Helper()
	cfg.DB, cfg.Coordinator = handle{open(t, dsn)}, claim.NewCoordinator(c, []string{job.Name})
	s, err := jobs.New(cfg, []jobs.Job{job})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// row is a job_claims row.
type row struct {
	owner, status string
	attempt       int
}

func readRow(t *testing.T, db *sql.DB, job string, tick time.Time) (row, bool) {
	t.Helper()
	var r row
	err := db.QueryRow(`SELECT owner, status, attempt FROM job_claims WHERE job = $1 AND scheduled_at = $2`, job, tick).
		Scan(&r.owner, &r.status, &r.attempt)
	if errors.Is(err, sql.ErrNoRows) {
		return r, false
	}
	if err != nil {
		t.Fatal(err)
	}
	return r, true
}

// expire ends the running lease of the job's claim, as if its owner had
// been paused or dead past it.
func expire(t *testing.T, db *sql.DB, job string) {
	t.Helper()
	res, err := db.Exec(`UPDATE job_claims SET lease_until = now() - interval '1 second' WHERE job = $1 AND status = 'running'`, job)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		t.Fatalf("running claims of %s expired: got %v, want 1", job, n)
	}
}

// Ensure that replicas racing for the same ticks win each exactly once,
// and that the winner's Finish records the tick as succeeded.
func TestClaim_OneWinnerPerTick(t *testing.T) {
	t.Parallel()
	dsn := server(t)
	const replicas, ticks = 4, 25
	cs := make([]*claim.Claimer, replicas)
	for i := range cs {
		cs[i] = replica(t, dsn, fmt.Sprintf("replica-%d", i), claim.Config{})
	}
	base := time.Now().Add(-time.Hour).Truncate(time.Second)
	ctx := context.Background()
	wins := make([][]int, ticks)
	for k := range ticks {
		tick := base.Add(time.Duration(k) * time.Second)
		var wg sync.WaitGroup
		var mu sync.Mutex
		start := make(chan struct{})
		for i, c := range cs {
			wg.Go(func() {
				<-start
				l, err := c.Claim(ctx, "race", tick)
				var lost *claim.LostError
				switch {
				case err == nil:
					if err := l.Finish(ctx, true); err != nil {
						t.Errorf("Finish: %v", err)
					}
					mu.Lock()
					wins[k] = append(wins[k], i)
					mu.Unlock()
				case !errors.As(err, &lost):
					t.Errorf("Claim: got %v, want nil or a *LostError", err)
				}
			})
		}
		close(start)
		wg.Wait()
	}
	db := open(t, dsn)
	var total float64
	for k := range ticks {
		if got, want := len(wins[k]), 1; got != want {
			t.Fatalf("tick %d: winners got %v (%v), want %v", k, got, wins[k], want)
		}
		r, ok := readRow(t, db, "race", base.Add(time.Duration(k)*time.Second))
		if want := (row{fmt.Sprintf("replica-%d", wins[k][0]), "succeeded", 1}); !ok || r != want {
			t.Errorf("tick %d: row got %+v (%v), want %+v", k, r, ok, want)
		}
	}
	var rows int
	if err := db.QueryRow(`SELECT count(*) FROM job_claims`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if got, want := rows, ticks; got != want {
		t.Errorf("rows: got %v, want %v", got, want)
	}
	var lost float64
	for _, c := range cs {
		total += testutil.ToFloat64(claim.Claims(c, "race", claim.Won))
		lost += testutil.ToFloat64(claim.Claims(c, "race", claim.Lost))
	}
	if got, want := total, float64(ticks); got != want {
		t.Errorf("claims won: got %v, want %v", got, want)
	}
	if got, want := lost, float64(ticks*(replicas-1)); got != want {
		t.Errorf("claims lost: got %v, want %v", got, want)
	}
}

// Ensure that a replica whose clock runs ahead cannot claim the tick its
// clock says is due before the server's clock says so, and learns how long
// to wait; and that the offset it measures matches its skew.
func TestClaim_NotDueByServerClock(t *testing.T) {
	t.Parallel()
	dsn := server(t)
	const skew = 10 * time.Second
	c := replica(t, dsn, "ahead", claim.Config{})
	claim.SetClockSkew(c, skew)
	tick := time.Now().Add(skew).Truncate(time.Second) // due by the replica's clock
	_, err := c.Claim(context.Background(), "skewed", tick)
	var nd *claim.NotDueError
	if !errors.As(err, &nd) || !errors.Is(err, claim.ErrNotDue) {
		t.Fatalf("Claim: got %v, want a *NotDueError", err)
	}
	if nd.Wait <= skew-2*time.Second || nd.Wait > skew {
		t.Errorf("Wait: got %v, want about %v", nd.Wait, skew)
	}
	if r, ok := readRow(t, open(t, dsn), "skewed", tick); ok {
		t.Errorf("row of the early tick: got %+v, want none", r)
	}
	if got := testutil.ToFloat64(claim.Claims(c, "skewed", claim.Won)); got != 0 {
		t.Errorf("claims won: got %v, want 0", got)
	}
}

// Ensure that the measured offset, and its gauge, match an injected skew.
func TestClaimer_MeasureOffset(t *testing.T) {
	t.Parallel()
	dsn := server(t)
	for _, skew := range []time.Duration{-7 * time.Second, 0, 3 * time.Second} {
		c := replica(t, dsn, fmt.Sprintf("skew%v", skew), claim.Config{})
		claim.SetClockSkew(c, skew)
		got, err := c.MeasureOffset(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		// The server runs on this machine: its clock is the machine's.
		if want := -skew; got < want-time.Second || got > want+time.Second {
			t.Errorf("skew %v: offset got %v, want about %v", skew, got, want)
		}
		if g, want := testutil.ToFloat64(claim.ClockOffset(c)), got.Seconds(); g != want {
			t.Errorf("skew %v: gauge got %v, want %v", skew, g, want)
		}
	}
}

// Ensure that a lease left to run out is taken over with attempt 2, that
// the old owner's Renew and Finish are then refused and counted, and that
// the new owner's Finish records the success.
func TestLease_TakeoverFencesOldOwner(t *testing.T) {
	t.Parallel()
	dsn := server(t)
	ctx := context.Background()
	a := replica(t, dsn, "a", claim.Config{})
	b := replica(t, dsn, "b", claim.Config{})
	db := open(t, dsn)
	tick := time.Now().Add(-time.Minute).Truncate(time.Second)

	la, err := a.Claim(ctx, "j", tick)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Claim(ctx, "j", tick); err == nil {
		t.Fatal("Claim of b under a's live lease: got nil, want an error")
	}
	expire(t, db, "j")
	lb, err := b.Claim(ctx, "j", tick)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := [2]any{lb.Result, lb.Attempt}, [2]any{claim.TakenOver, 2}; got != want {
		t.Errorf("takeover: got %v, want %v", got, want)
	}
	if got := testutil.ToFloat64(claim.Claims(b, "j", claim.TakenOver)); got != 1 {
		t.Errorf("b's claims taken over: got %v, want 1", got)
	}
	if err := la.Renew(ctx); !errors.Is(err, claim.ErrFenced) {
		t.Errorf("a's Renew: got %v, want %v", err, claim.ErrFenced)
	}
	if err := la.Finish(ctx, true); !errors.Is(err, claim.ErrFenced) {
		t.Errorf("a's Finish: got %v, want %v", err, claim.ErrFenced)
	}
	if got := testutil.ToFloat64(claim.LeasesLost(a, "j")); got != 1 {
		t.Errorf("a's leases lost: got %v, want 1", got)
	}
	if got := testutil.ToFloat64(claim.FencedFinishes(a, "j")); got != 1 {
		t.Errorf("a's fenced finishes: got %v, want 1", got)
	}
	if r, _ := readRow(t, db, "j", tick); r != (row{"b", "running", 2}) {
		t.Errorf("row after a's stale finish: got %+v, want b's running attempt 2", r)
	}
	if err := lb.Finish(ctx, true); err != nil {
		t.Fatal(err)
	}
	if r, _ := readRow(t, db, "j", tick); r != (row{"b", "succeeded", 2}) {
		t.Errorf("row: got %+v, want b's succeeded attempt 2", r)
	}
	if got := testutil.ToFloat64(claim.FencedFinishes(b, "j")); got != 0 {
		t.Errorf("b's fenced finishes: got %v, want 0", got)
	}
}

// Ensure that a lease left to run out, with no renewal, is taken over once
// the server's clock has passed its deadline, and not before.
func TestLease_ExpiresByTheServerClock(t *testing.T) {
	t.Parallel()
	dsn := server(t)
	ctx := context.Background()
	a := replica(t, dsn, "a", claim.Config{Lease: 300 * time.Millisecond})
	b := replica(t, dsn, "b", claim.Config{})
	db := open(t, dsn)
	tick := time.Now().Add(-time.Minute).Truncate(time.Second)
	if _, err := a.Claim(ctx, "j", tick); err != nil {
		t.Fatal(err)
	}
	var until time.Time
	if err := db.QueryRow(`SELECT lease_until FROM job_claims WHERE job = 'j'`).Scan(&until); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		l, err := b.Claim(ctx, "j", tick)
		var lost *claim.LostError
		if err == nil {
			if l.Attempt != 2 {
				t.Errorf("attempt: got %v, want 2", l.Attempt)
			}
			break
		}
		if !errors.As(err, &lost) {
			t.Fatalf("Claim under a's lease: got %v, want a *LostError", err)
		}
		if time.Now().After(deadline) {
			t.Fatal("not taken over 20s after a lease of 300ms")
		}
		time.Sleep(20 * time.Millisecond)
	}
	var early bool
	if err := db.QueryRow(`SELECT started_at <= $1 FROM job_claims WHERE job = 'j'`, until).Scan(&early); err != nil {
		t.Fatal(err)
	}
	if early {
		t.Errorf("taken over at or before the lease's end %v by the server's clock", until)
	}
}

// Ensure that Hold renews the lease, so that another replica cannot take
// the tick over, and cancels the run's context with ErrLeaseLost once the
// claim is taken over.
func TestLease_HoldCancelsOnLoss(t *testing.T) {
	t.Parallel()
	dsn := server(t)
	ctx := context.Background()
	const lease = 1500 * time.Millisecond
	a := replica(t, dsn, "a", claim.Config{Lease: lease})
	b := replica(t, dsn, "b", claim.Config{Lease: lease})
	db := open(t, dsn)
	tick := time.Now().Add(-time.Minute).Truncate(time.Second)
	la, err := a.Claim(ctx, "j", tick)
	if err != nil {
		t.Fatal(err)
	}
	var first time.Time
	if err := db.QueryRow(`SELECT lease_until FROM job_claims WHERE job = 'j'`).Scan(&first); err != nil {
		t.Fatal(err)
	}
	runCtx := la.Hold(ctx)

	// Wait for a renewal: the deadline moves on.
	deadline := time.Now().Add(20 * time.Second)
	for {
		var until time.Time
		if err := db.QueryRow(`SELECT lease_until FROM job_claims WHERE job = 'j'`).Scan(&until); err != nil {
			t.Fatal(err)
		}
		if until.After(first) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("lease_until: still %v after 20s, want it renewed", until)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if runCtx.Err() != nil {
		t.Fatalf("run context while the lease is held: got %v, want nil", context.Cause(runCtx))
	}

	expire(t, db, "j")
	if _, err := b.Claim(ctx, "j", tick); err != nil {
		t.Fatal(err)
	}
	select {
	case <-runCtx.Done():
	case <-time.After(20 * time.Second):
		t.Fatal("run context: not cancelled 20s after the takeover")
	}
	if got := context.Cause(runCtx); !errors.Is(got, claim.ErrLeaseLost) {
		t.Errorf("cause: got %v, want %v", got, claim.ErrLeaseLost)
	}
	if err := la.Finish(ctx, true); !errors.Is(err, claim.ErrFenced) {
		t.Errorf("Finish: got %v, want %v", err, claim.ErrFenced)
	}
	if got := testutil.ToFloat64(claim.LeasesLost(a, "j")); got != 1 {
		t.Errorf("leases lost: got %v, want 1", got)
	}
}

// Ensure that a renewer that cannot reach the database for a whole lease
// gives the run up: another replica may take it over meanwhile.
func TestLease_HoldGivesUpWhenUnconfirmed(t *testing.T) {
	t.Parallel()
	dsn := server(t)
	ctx := context.Background()
	db := open(t, dsn)
	a, err := claim.New(claim.Config{DB: handle{db}, Owner: "a", Lease: 600 * time.Millisecond, Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	l, err := a.Claim(ctx, "j", time.Now().Add(-time.Minute).Truncate(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	runCtx := l.Hold(ctx)
	if err := db.Close(); err != nil { // every renewal fails from here
		t.Fatal(err)
	}
	select {
	case <-runCtx.Done():
	case <-time.After(20 * time.Second):
		t.Fatal("run context: not cancelled 20s after the database went away")
	}
	if got := context.Cause(runCtx); !errors.Is(got, claim.ErrLeaseLost) {
		t.Errorf("cause: got %v, want %v", got, claim.ErrLeaseLost)
	}
	if got := testutil.ToFloat64(claim.LeasesLost(a, "j")); got != 1 {
		t.Errorf("leases lost: got %v, want 1", got)
	}
	if err := l.Finish(ctx, true); err == nil {
		t.Error("Finish on a closed handle: got nil, want an error")
	}
}

// Ensure that a dead replica's run is taken over by the claim of the job's
// next tick, as the earlier tick, and by the scan of another replica only,
// never of its own owner.
func TestClaim_TakesOverAnEarlierTick(t *testing.T) {
	t.Parallel()
	dsn := server(t)
	ctx := context.Background()
	a := replica(t, dsn, "a", claim.Config{})
	b := replica(t, dsn, "b", claim.Config{})
	c := replica(t, dsn, "c", claim.Config{})
	db := open(t, dsn)
	tick := time.Now().Add(-10 * time.Minute).Truncate(time.Second)
	for _, take := range []func() (*claim.Lease, error){
		func() (*claim.Lease, error) { return b.Claim(ctx, "j", tick.Add(time.Second)) },
		func() (*claim.Lease, error) {
			if ls, err := a.TakeOverExpired(ctx, []string{"j"}); err != nil || len(ls) != 0 {
				return nil, fmt.Errorf("the owner's own scan: got %v, %v, want nothing", ls, err)
			}
			ls, err := c.TakeOverExpired(ctx, []string{"j", "other"})
			if err != nil || len(ls) != 1 {
				return nil, fmt.Errorf("c's scan: got %v, %v, want one lease", ls, err)
			}
			return ls[0], nil
		},
	} {
		tick = tick.Add(time.Minute)
		la, err := a.Claim(ctx, "j", tick)
		if err != nil {
			t.Fatal(err)
		}
		expire(t, db, "j")
		l, err := take()
		if err != nil {
			t.Fatal(err)
		}
		if !l.ScheduledAt.Equal(la.ScheduledAt) || l.Attempt != 2 || l.Result != claim.TakenOver {
			t.Errorf("takeover: got tick %v attempt %v %v, want tick %v attempt 2 taken_over", l.ScheduledAt, l.Attempt, l.Result, la.ScheduledAt)
		}
		if err := l.Finish(ctx, true); err != nil {
			t.Fatal(err)
		}
	}
}

// Ensure that a failed claim can be claimed again for a retry by its owner
// only, with the attempt raised, and not while another tick is running.
func TestClaimer_Reclaim(t *testing.T) {
	t.Parallel()
	dsn := server(t)
	ctx := context.Background()
	a := replica(t, dsn, "a", claim.Config{})
	b := replica(t, dsn, "b", claim.Config{})
	db := open(t, dsn)
	tick := time.Now().Add(-time.Minute).Truncate(time.Second)
	l, err := a.Claim(ctx, "j", tick)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Reclaim(ctx, "j", tick); !errors.Is(err, claim.ErrFenced) {
		t.Errorf("Reclaim of a running claim: got %v, want %v", err, claim.ErrFenced)
	}
	if err := l.Finish(ctx, false); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Reclaim(ctx, "j", tick); !errors.Is(err, claim.ErrFenced) {
		t.Errorf("b's Reclaim of a's claim: got %v, want %v", err, claim.ErrFenced)
	}
	next, err := b.Claim(ctx, "j", tick.Add(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Reclaim(ctx, "j", tick); !errors.Is(err, claim.ErrBusy) {
		t.Errorf("Reclaim while the next tick runs: got %v, want %v", err, claim.ErrBusy)
	}
	if err := next.Finish(ctx, true); err != nil {
		t.Fatal(err)
	}
	l2, err := a.Reclaim(ctx, "j", tick)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Finish(ctx, true); !errors.Is(err, claim.ErrFenced) {
		t.Errorf("the first attempt's Finish after the reclaim: got %v, want %v", err, claim.ErrFenced)
	}
	if err := l2.Finish(ctx, true); err != nil {
		t.Fatal(err)
	}
	if r, _ := readRow(t, db, "j", tick); r != (row{"a", "succeeded", 2}) {
		t.Errorf("row: got %+v, want a's succeeded attempt 2", r)
	}
	if got := testutil.ToFloat64(claim.Claims(a, "j", claim.Won)); got != 1 {
		t.Errorf("a's claims won: got %v, want 1 (a reclaim is not a claim)", got)
	}
}

// Ensure that a Claimer works on a database that only the worker's handle
// migrated: the handle's open creates job_claims.
func TestClaimer_OnTheHandlesSchema(t *testing.T) {
	t.Parallel()
	srv := pgtest.New(t)
	srv.Start(t)
	h := db.New(db.Config{URL: srv.URL(), ReplicaID: "a"})
	defer h.Close(context.Background())
	c, err := claim.New(claim.Config{DB: h, Owner: "a", Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	l, err := c.Claim(context.Background(), "j", time.Now().Add(-time.Second))
	if err != nil {
		t.Fatalf("Claim on the handle's database: %v", err)
	}
	if err := l.Finish(context.Background(), true); err != nil {
		t.Fatal(err)
	}
}

// Ensure that a running claim of a job refuses a claim of its next tick,
// on every replica, until it has finished, and that the busy tick is
// recorded skipped once: the first replica to find it busy gets ErrBusy
// and writes the one 'skipped' row, the others lose the tick to it.
func TestClaim_NoOverlap(t *testing.T) {
	t.Parallel()
	dsn := server(t)
	ctx := context.Background()
	a := replica(t, dsn, "a", claim.Config{})
	b := replica(t, dsn, "b", claim.Config{})
	c := replica(t, dsn, "c", claim.Config{})
	tick := time.Now().Add(-time.Minute).Truncate(time.Second)
	la, err := a.Claim(ctx, "slow", tick)
	if err != nil {
		t.Fatal(err)
	}
	next := tick.Add(time.Second)
	if _, err := b.Claim(ctx, "slow", next); !errors.Is(err, claim.ErrBusy) {
		t.Errorf("b's claim of the next tick: got %v, want %v", err, claim.ErrBusy)
	}
	for _, r := range []*claim.Claimer{a, c} {
		var lost *claim.LostError
		if _, err := r.Claim(ctx, "slow", next); !errors.As(err, &lost) || lost.Owner != "b" || lost.Status != "skipped" {
			t.Errorf("%s's claim of the next tick: got %v, want it lost to b's skip", r.Owner(), err)
		}
	}
	// a's own scheduler finds its run still going: Skip, which loses too.
	var lost *claim.LostError
	if err := a.Skip(ctx, "slow", next); !errors.As(err, &lost) {
		t.Errorf("a's Skip of the next tick: got %v, want a *LostError", err)
	}
	if r, ok := readRow(t, open(t, dsn), "slow", next); !ok || r.owner != "b" || r.status != "skipped" || r.attempt != 0 {
		t.Errorf("row of the next tick: got %+v (%v), want b's skipped row", r, ok)
	}
	if got := testutil.ToFloat64(claim.Claims(b, "slow", claim.Skipped)); got != 1 {
		t.Errorf("b's claims{result=skipped}: got %v, want 1", got)
	}
	for _, r := range []*claim.Claimer{a, c} {
		if got := testutil.ToFloat64(claim.Claims(r, "slow", claim.Skipped)); got != 0 {
			t.Errorf("%s's claims{result=skipped}: got %v, want 0", r.Owner(), got)
		}
	}
	// A local Skip that comes first wins the tick.
	third := next.Add(time.Second)
	if err := a.Skip(ctx, "slow", third); !errors.Is(err, claim.ErrBusy) {
		t.Errorf("a's Skip of the third tick: got %v, want %v", err, claim.ErrBusy)
	}
	// A tick not due by the server's clock is not recorded.
	future := time.Now().Add(time.Hour).Truncate(time.Second)
	if err := b.Skip(ctx, "slow", future); !errors.Is(err, claim.ErrNotDue) {
		t.Errorf("Skip of a tick an hour ahead: got %v, want %v", err, claim.ErrNotDue)
	}
	if r, ok := readRow(t, open(t, dsn), "slow", future); ok {
		t.Errorf("row of the tick an hour ahead: got %+v, want none", r)
	}
	// Another job is not held up.
	if l, err := b.Claim(ctx, "other", next); err != nil {
		t.Errorf("claim of another job: got %v, want nil", err)
	} else if err := l.Finish(ctx, false); err != nil {
		t.Fatal(err)
	}
	if err := la.Finish(ctx, false); err != nil {
		t.Fatal(err)
	}
	fourth := third.Add(time.Second)
	lb, err := b.Claim(ctx, "slow", fourth)
	if err != nil {
		t.Fatalf("claim of the fourth tick after the finish: got %v, want nil", err)
	}
	if err := lb.Finish(ctx, true); err != nil {
		t.Fatal(err)
	}
}

// Ensure that schema.MigrateClaims widens the status check of a job_claims made before
// 'skipped' existed, keeping its rows, and is a no-op after.
func TestMigrate_AddsSkippedToAnOldTable(t *testing.T) {
	t.Parallel()
	db := open(t, pgtest.Start(t))
	ctx := context.Background()
	if _, err := db.Exec(`CREATE TABLE job_claims (
	job text NOT NULL, scheduled_at timestamptz NOT NULL, owner text NOT NULL, attempt integer NOT NULL,
	lease_until timestamptz NOT NULL,
	status text NOT NULL CHECK (status IN ('running', 'succeeded', 'failed', 'missed')),
	started_at timestamptz NOT NULL, finished_at timestamptz, PRIMARY KEY (job, scheduled_at));
INSERT INTO job_claims VALUES ('j', now() - interval '1 minute', 'x', 1, now(), 'succeeded', now(), now())`); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := schema.MigrateClaims(ctx, db); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.Exec(`INSERT INTO job_claims VALUES ('j', now(), 'x', 0, now(), 'skipped', now(), now())`); err != nil {
		t.Fatalf("a skipped row after MigrateClaims: got %v, want nil", err)
	}
	if _, err := db.Exec(`INSERT INTO job_claims VALUES ('j', now() + interval '1 second', 'x', 0, now(), 'bogus', now(), now())`); err == nil {
		t.Fatal("a row of an unknown status: got nil, want a check violation")
	}
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM job_claims`).Scan(&n); err != nil || n != 2 {
		t.Errorf("rows: got %d (%v), want 2", n, err)
	}
}

// Ensure that the index itself refuses a second running claim of a job,
// whoever writes it.
func TestMigrate_OneRunningClaimPerJob(t *testing.T) {
	t.Parallel()
	dsn := server(t)
	db := open(t, dsn)
	if err := schema.MigrateClaims(context.Background(), db); err != nil {
		t.Fatalf("second MigrateClaims: got %v, want nil", err)
	}
	const insert = `INSERT INTO job_claims (job, scheduled_at, owner, attempt, lease_until, status, started_at)
VALUES ('j', $1, 'x', 1, now(), $2, now())`
	tick := time.Now().Truncate(time.Second)
	if _, err := db.Exec(insert, tick, "running"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(insert, tick.Add(time.Second), "succeeded"); err != nil {
		t.Fatalf("a finished claim beside the running one: got %v, want nil", err)
	}
	if _, err := db.Exec(insert, tick.Add(2*time.Second), "running"); err == nil {
		t.Fatal("a second running claim: got nil, want a unique violation")
	}
}

// Ensure that Prune deletes old finished and missed claims only, keeping
// running ones and each job's newest.
func TestPrune_KeepsRunningAndNewest(t *testing.T) {
	t.Parallel()
	dsn := server(t)
	db := open(t, dsn)
	const insert = `INSERT INTO job_claims (job, scheduled_at, owner, attempt, lease_until, status, started_at)
VALUES ($1, now() - $2 * interval '1 hour', 'x', 1, now(), $3, now())`
	for _, r := range []struct {
		job    string
		hours  int
		status string
	}{
		{"a", 5, "succeeded"}, {"a", 4, "missed"}, {"a", 3, "running"}, {"a", 0, "failed"},
		{"b", 5, "succeeded"}, // b's newest: kept however old
	} {
		if _, err := db.Exec(insert, r.job, r.hours, r.status); err != nil {
			t.Fatal(err)
		}
	}
	n, err := claim.Prune(context.Background(), db, 2*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := n, int64(2); got != want {
		t.Errorf("deleted: got %v, want %v", got, want)
	}
	var left string
	if err := db.QueryRow(`SELECT string_agg(job || ':' || status, ',' ORDER BY job, scheduled_at) FROM job_claims`).Scan(&left); err != nil {
		t.Fatal(err)
	}
	if want := "a:running,a:failed,b:succeeded"; left != want {
		t.Errorf("left: got %v, want %v", left, want)
	}
	if _, err := claim.Prune(context.Background(), db, 0); err == nil {
		t.Error("Prune(0): got nil, want an error")
	}
}

// Ensure that earlier ticks with no claim are marked missed once older than
// the grace, counted once across replicas, and can no longer be claimed;
// and that claimed or recent ticks are not.
func TestClaim_MissedTicks(t *testing.T) {
	t.Parallel()
	dsn := server(t)
	ctx := context.Background()
	cfg := claim.Config{MissedGrace: 5 * time.Second}
	a := replica(t, dsn, "a", cfg)
	b := replica(t, dsn, "b", cfg)
	db := open(t, dsn)
	now := time.Now().Truncate(time.Second)
	ran, missed, missed2 := now.Add(-30*time.Second), now.Add(-20*time.Second), now.Add(-15*time.Second)
	recent, tick := now.Add(-time.Second), now.Add(-500*time.Millisecond)

	l, err := b.Claim(ctx, "j", ran)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Finish(ctx, true); err != nil {
		t.Fatal(err)
	}
	// The winner checks at its Finish, the loser at its Claim.
	if l, err = a.Claim(ctx, "j", tick, ran, missed, recent); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(claim.TicksMissed(a, "j")); got != 0 {
		t.Errorf("a's ticks missed before its Finish: got %v, want 0", got)
	}
	if err := l.Finish(ctx, true); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Claim(ctx, "j", tick, ran, missed, missed2, recent); err == nil {
		t.Fatal("b's claim of a's tick: got nil, want an error")
	}
	if got := testutil.ToFloat64(claim.TicksMissed(a, "j")); got != 1 {
		t.Errorf("a's ticks missed: got %v, want 1", got)
	}
	if got := testutil.ToFloat64(claim.TicksMissed(b, "j")); got != 1 {
		t.Errorf("b's ticks missed: got %v, want 1 (a counted the other)", got)
	}
	for _, m := range []time.Time{missed, missed2} {
		if r, _ := readRow(t, db, "j", m); r.status != "missed" {
			t.Errorf("missed tick %v: status got %q, want missed", m, r.status)
		}
	}
	if r, _ := readRow(t, db, "j", ran); r.status != "succeeded" {
		t.Errorf("claimed tick's status: got %q, want succeeded", r.status)
	}
	if r, ok := readRow(t, db, "j", recent); ok {
		t.Errorf("tick within the grace: got %+v, want no row", r)
	}
	if _, err := b.Claim(ctx, "j", missed); !errors.Is(err, claim.ErrMissed) {
		t.Errorf("late claim of the missed tick: got %v, want %v", err, claim.ErrMissed)
	}
}

// Ensure that the claim metrics, every series created, pass promlint, and
// are the documented names.
func TestNew_MetricsLint(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	c, err := claim.New(claim.Config{DB: handle{&sql.DB{}}, Owner: "a", Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	c.Init("j")
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	want := []string{"worker_db_clock_offset_seconds", "worker_job_claims_total", "worker_job_fenced_finishes_total",
		"worker_job_leases_lost_total", "worker_job_ticks_missed_total"}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, mf := range mfs {
		got = append(got, mf.GetName())
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("metrics: got %v, want %v", got, want)
	}
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "metrics.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range got {
		if !strings.Contains(string(doc), "| `"+name+"` |") {
			t.Errorf("metric %s: not in docs/metrics.md's tables", name)
		}
	}
}

// down is the handle of a server that cannot be reached.
type down struct{}

func (down) Init(context.Context) (*sql.DB, error) { return nil, errors.New("connection refused") }

// Ensure that a Claimer whose handle cannot be opened says so, and claims
// nothing.
func TestClaim_DatabaseUnreachable(t *testing.T) {
	t.Parallel()
	c, err := claim.New(claim.Config{DB: down{}, Owner: "a"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Claim(context.Background(), "j", time.Now())
	if err == nil || !strings.Contains(err.Error(), "cannot reach the database: connection refused") {
		t.Errorf("Claim: got %v, want cannot reach the database", err)
	}
}

// Ensure that New refuses a Config without a handle or an owner.
func TestNew_Invalid(t *testing.T) {
	t.Parallel()
	for name, cfg := range map[string]claim.Config{
		"no db":          {Owner: "a"},
		"no owner":       {DB: handle{&sql.DB{}}},
		"negative lease": {DB: handle{&sql.DB{}}, Owner: "a", Lease: -time.Second},
		"short lease":    {DB: handle{&sql.DB{}}, Owner: "a", Lease: time.Millisecond},
	} {
		if _, err := claim.New(cfg); err == nil {
			t.Errorf("%s: got nil, want an error", name)
		}
	}
}
