package jobs_test

import (
	"context"
	"database/sql"
	"strings"
	"testing"

	"github.com/sqlworker/worker/internal/db"
	"github.com/sqlworker/worker/internal/jobs"
	"github.com/sqlworker/worker/internal/workertest"
)

// Ensure a SQL job reports the same rows and errors on every run, on the
// text of its first run and the statements prepared for the later ones, and
// keeps working when its statements cannot be prepared ahead (a temporary
// table it creates).
func TestSQLFunc_PreparedRuns(t *testing.T) {
	d := mustInit(t, workertest.MustOpenHandle(t))
	ctx := context.Background()
	counted := jobs.SQLFunc(`
		CREATE TABLE IF NOT EXISTS ev (x INTEGER PRIMARY KEY, y);
		INSERT INTO ev (y) VALUES (1), (2), (3); -- a comment between
		DELETE FROM ev WHERE y = 1`)
	temp := jobs.SQLFunc(`CREATE TEMP TABLE IF NOT EXISTS tt (x); INSERT INTO tt VALUES (1); DELETE FROM tt`)
	for i := range 5 {
		if got, err := counted(ctx, d); err != nil || got != 4 {
			t.Fatalf("run %d: got %d rows (%v), want 4 (3 inserted + 1 deleted)", i, got, err)
		}
		if got, err := temp(ctx, d); err != nil || got != 2 {
			t.Fatalf("temp run %d: got %d rows (%v), want 2", i, got, err)
		}
	}
	var n int
	if err := d.QueryRow("SELECT count(*) FROM ev").Scan(&n); err != nil || n != 10 {
		t.Fatalf("rows kept: got %d (%v), want 10", n, err)
	}
	// Two runs that succeed, then runs that fail on the statements prepared.
	failing := jobs.SQLFunc("CREATE TABLE IF NOT EXISTS u (x UNIQUE); INSERT INTO u VALUES ((SELECT count(*) FROM u) % 2)")
	for i := range 4 {
		_, err := failing(ctx, d)
		if i < 2 && err != nil {
			t.Fatalf("run %d: %v", i, err)
		}
		if i >= 2 && (err == nil || !strings.Contains(err.Error(), "UNIQUE constraint failed")) {
			t.Fatalf("run %d: got %v, want a UNIQUE constraint error", i, err)
		}
	}
	if err := d.QueryRow("SELECT count(*) FROM u").Scan(&n); err != nil || n != 2 {
		t.Fatalf("rows of u: got %d (%v), want 2 (the failed runs rolled back)", n, err)
	}
}

// Ensure the prepared statements of a job that returns rows (a SELECT of
// many rows, an INSERT … RETURNING of many) leave no statement busy on the
// pooled connection: wal_checkpoint(TRUNCATE) and DDL on it succeed after
// the job's prepared runs. With one connection in the pool they run on the
// connection the job ran on. Run with Exec, a prepared SELECT stops at its
// first row and holds a read transaction (d0b9719, reverted in 0f21e42).
func TestSQLFunc_PreparedRowsLeaveNoStatementBusy(t *testing.T) {
	h := workertest.MustOpenHandleWith(t, db.Config{MaxOpenConns: 1})
	d := mustInit(t, h)
	ctx := context.Background()
	if _, err := d.ExecContext(ctx, "CREATE TABLE s (x INTEGER PRIMARY KEY, y); INSERT INTO s (y) VALUES (1), (2), (3)"); err != nil {
		t.Fatal(err)
	}
	job := jobs.SQLFunc(`SELECT x, y FROM s; INSERT INTO s (y) VALUES (4), (5) RETURNING x; SELECT count(*) FROM s`)
	for i := range 3 { // the first run's text, then two on the statements prepared
		if got, err := job(ctx, d); err != nil || got != 2 {
			t.Fatalf("run %d: got %d rows (%v), want 2", i, got, err)
		}
	}
	var busy, log, checkpointed int
	if err := d.QueryRowContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)").Scan(&busy, &log, &checkpointed); err != nil || busy != 0 {
		t.Fatalf("wal_checkpoint(TRUNCATE) after the job: got busy %d (%v), want 0 and no error", busy, err)
	}
	for _, ddl := range []string{"CREATE TABLE t2 (a)", "DROP TABLE t2", "CREATE INDEX s_y ON s (y)"} {
		if _, err := d.ExecContext(ctx, ddl); err != nil {
			t.Fatalf("%s after the job: %v", ddl, err)
		}
	}
	var n int
	if err := d.QueryRowContext(ctx, "SELECT count(*) FROM s").Scan(&n); err != nil || n != 9 {
		t.Fatalf("rows of s: got %d (%v), want 9 (3 + 2 a run)", n, err)
	}
}

func mustInit(t *testing.T, h *db.Handle) *sql.DB {
	t.Helper()
	d, err := h.Init(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return d
}
