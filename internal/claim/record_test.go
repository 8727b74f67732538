package claim_test

import (
	"context"
	"database/sql"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/robfig/cron/v3"

	"github.com/sqlworker/worker/internal/claim"
	"github.com/sqlworker/worker/internal/db"
	"github.com/sqlworker/worker/internal/jobhistory"
	"github.com/sqlworker/worker/internal/jobs"
	"github.com/sqlworker/worker/internal/pgtest"
)

// serverWithRuns is server with the worker's own tables too, job_runs
// among them, as the worker's handle migrates them (job_claims included).
func serverWithRuns(t testing.TB) string {
	t.Helper()
	srv := pgtest.New(t)
	srv.Start(t)
	h := db.New(db.Config{URL: srv.URL(), ReplicaID: "migrate"})
	if _, err := h.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.Close(context.Background())
	return srv.DSN()
}

// runRow is a job_runs row as the tests read it, with whether it was
// written in the transaction that last wrote the tick's claim.
type runRow struct {
	result, error string
	attempt       int
	withFinish    bool
}

func readRuns(t *testing.T, d *sql.DB, job string, tick time.Time) []runRow {
	t.Helper()
	rows, err := d.Query(`SELECT r.result, r.error, r.attempt, coalesce(r.xmin::text = c.xmin::text, false)
		FROM job_runs r LEFT JOIN job_claims c ON c.job = r.job AND c.scheduled_at = r.scheduled_at
		WHERE r.job = $1 AND r.scheduled_at = $2 ORDER BY r.id`, job, tick)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = rows.Close() }()
	var out []runRow
	for rows.Next() {
		var r runRow
		if err := rows.Scan(&r.result, &r.error, &r.attempt, &r.withFinish); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// Ensure that FinishRecording writes the run's job_runs row in the
// transaction that finishes the claim, and that a fenced finish writes
// none: the row exists exactly when the finish was accepted.
func TestLease_FinishRecording(t *testing.T) {
	t.Parallel()
	dsn := serverWithRuns(t)
	ctx := context.Background()
	d := open(t, dsn)
	a := replica(t, dsn, "a", claim.Config{})
	b := replica(t, dsn, "b", claim.Config{})
	tick := time.Now().Add(-time.Minute).Truncate(time.Second)
	runOf := func(tick time.Time, result string) jobhistory.RunRow {
		return jobhistory.RunRow{Job: "rec", ScheduledAt: tick, StartedAt: tick, EndedAt: tick.Add(time.Millisecond), Result: result, Attempt: 1}
	}

	l, err := a.Claim(ctx, "rec", tick)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.FinishRecording(ctx, true, runOf(tick, "success")); err != nil {
		t.Fatalf("FinishRecording: %v", err)
	}
	if got, _ := readRow(t, d, "rec", tick); got != (row{"a", "succeeded", 1}) {
		t.Errorf("claim: got %+v, want a's succeeded attempt 1", got)
	}
	if got := readRuns(t, d, "rec", tick); len(got) != 1 || got[0] != (runRow{"success", "", 1, true}) {
		t.Errorf("job_runs rows: got %+v, want one success written with the finish", got)
	}

	// a's run is taken over by b: a's finish is refused and writes no row.
	tick2 := tick.Add(time.Second)
	l, err = a.Claim(ctx, "rec", tick2)
	if err != nil {
		t.Fatal(err)
	}
	expire(t, d, "rec")
	if lb, err := b.Claim(ctx, "rec", tick2); err != nil || lb.Attempt != 2 {
		t.Fatalf("b's takeover: got %v, %v, want attempt 2", lb, err)
	}
	if err := l.FinishRecording(ctx, true, runOf(tick2, "success")); !errors.Is(err, claim.ErrFenced) {
		t.Errorf("a's finish after the takeover: got %v, want ErrFenced", err)
	}
	if got := readRuns(t, d, "rec", tick2); len(got) != 0 {
		t.Errorf("job_runs rows of the fenced finish: got %+v, want none", got)
	}
	if got := testutil.ToFloat64(claim.FencedFinishes(a, "rec")); got != 1 {
		t.Errorf("fenced finishes: got %v, want 1", got)
	}

	// A row job_runs refuses fails the whole statement: the claim is
	// still running, for its owner to finish alone.
	tick3 := tick.Add(2 * time.Second)
	if _, err := d.Exec(`UPDATE job_claims SET status = 'succeeded' WHERE job = 'rec' AND status = 'running'`); err != nil {
		t.Fatal(err)
	}
	if l, err = a.Claim(ctx, "rec", tick3); err != nil {
		t.Fatal(err)
	}
	if err := l.FinishRecording(ctx, true, runOf(tick3, "no such result")); err == nil || errors.Is(err, claim.ErrFenced) {
		t.Errorf("finish with a row job_runs refuses: got %v, want the CHECK constraint's error", err)
	}
	if got, _ := readRow(t, d, "rec", tick3); got.status != "running" {
		t.Errorf("claim after the refused statement: got %+v, want still running", got)
	}
	if err := l.Finish(ctx, true); err != nil {
		t.Errorf("Finish alone after it: %v", err)
	}
}

// Ensure that a scheduler coordinated on PostgreSQL writes each run's
// job_runs row in the statement that finishes its claim: every succeeded
// tick has exactly one success row, written in the finish's transaction,
// and no tick has a row without a finished claim.
func TestCoordinator_RecordsTheRunWithTheFinish(t *testing.T) {
	t.Parallel()
	dsn := serverWithRuns(t)
	ctx := context.Background()
	d := open(t, dsn)
	c := replica(t, dsn, "a", claim.Config{})
	s := coordinated(t, dsn, c, jobs.Config{
		Registerer: prometheus.NewRegistry(),
	}, jobs.Job{
		Name:     "rec",
		Schedule: cron.Every(time.Second),
		Func:     func(context.Context, *sql.DB) (int64, error) { return 1, nil },
	})
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	waitSucceeded(t, d, 3, "a")
	if err := s.Stop(ctx); err != nil {
		t.Errorf("Stop: %v", err)
	}
	var claims, runs, together, orphans int
	if err := d.QueryRow(`SELECT
		(SELECT count(*) FROM job_claims WHERE job = 'rec' AND status = 'succeeded'),
		(SELECT count(*) FROM job_runs WHERE job = 'rec' AND result = 'success'),
		(SELECT count(*) FROM job_runs r JOIN job_claims c USING (job, scheduled_at)
			WHERE r.job = 'rec' AND r.result = 'success' AND c.status = 'succeeded' AND r.xmin::text = c.xmin::text),
		(SELECT count(*) FROM job_runs r WHERE NOT EXISTS (SELECT 1 FROM job_claims c
			WHERE c.job = r.job AND c.scheduled_at = r.scheduled_at AND c.status <> 'running'))`).
		Scan(&claims, &runs, &together, &orphans); err != nil {
		t.Fatal(err)
	}
	if claims < 3 || runs != claims || together != claims || orphans != 0 {
		t.Errorf("succeeded claims %v, success rows %v, of them written with the finish %v, rows without a finished claim %v: want rows = claims = written with the finish (>= 3), none without",
			claims, runs, together, orphans)
	}
}
