package jobs_test

import (
	"context"
	"database/sql"
	"errors"
	"testing"
	"time"

	"github.com/sqlworker/worker/internal/db"
	"github.com/sqlworker/worker/internal/jobs"
	"github.com/sqlworker/worker/internal/pgtest"
)

// pgDB returns an open handle's pool on a new PostgreSQL server.
func pgDB(t *testing.T) *sql.DB {
	t.Helper()
	srv := pgtest.New(t)
	srv.Start(t)
	h := db.New(db.Config{URL: srv.URL(), ReplicaID: "t"})
	t.Cleanup(func() { h.Close(context.Background()) })
	d, err := h.Init(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// Ensure a SQL job on PostgreSQL reports the rows its INSERT, UPDATE and
// DELETE statements changed, summed, not a SELECT's rows, and commits or
// rolls back as a whole.
func TestSQLFunc_Postgres(t *testing.T) {
	ctx := context.Background()
	d := pgDB(t)
	fn := jobs.SQLFunc(`CREATE TABLE IF NOT EXISTS t (x int PRIMARY KEY);
		INSERT INTO t SELECT generate_series(1, 5);
		UPDATE t SET x = x + 10 WHERE x <= 2;
		SELECT * FROM t;
		DELETE FROM t WHERE x = 5`)
	if n, err := fn(ctx, d); err != nil || n != 8 {
		t.Fatalf("got %d (%v), want 8 rows (5 inserted, 2 updated, 1 deleted)", n, err)
	}
	failing := jobs.SQLFunc("INSERT INTO t VALUES (100); INSERT INTO t VALUES (100)")
	if _, err := failing(ctx, d); err == nil {
		t.Fatal("duplicate key: got nil, want an error")
	}
	var n int
	if err := d.QueryRow("SELECT count(*) FROM t WHERE x = 100").Scan(&n); err != nil || n != 0 {
		t.Fatalf("rows of the failed run: got %d (%v), want 0: it rolls back whole", n, err)
	}
	if got := d.Stats().InUse; got != 0 {
		t.Errorf("connections in use after the runs: got %v, want 0", got)
	}
}

// Ensure a done context interrupts a SQL job on PostgreSQL, and the pool
// is usable afterwards.
func TestSQLFunc_PostgresTimeout(t *testing.T) {
	d := pgDB(t)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := jobs.SQLFunc("SELECT pg_sleep(600)")(ctx, d)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want %v", err, context.DeadlineExceeded)
	}
	if n, err := jobs.SQLFunc("SELECT 1")(context.Background(), d); err != nil || n != 0 {
		t.Fatalf("run after the timeout: got %d (%v), want 0, nil", n, err)
	}
}
