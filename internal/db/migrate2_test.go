package db_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
	"time"

	"github.com/sqlworker/worker/internal/db"
	"github.com/sqlworker/worker/internal/jobhistory"
	"github.com/sqlworker/worker/internal/workertest"
)

// schemaV1 is job_runs as the first release created it (migration 1).
const schemaV1 = `CREATE TABLE job_runs (
		id            INTEGER PRIMARY KEY,
		job           TEXT    NOT NULL,
		scheduled_at  TEXT    NOT NULL,
		started_at    TEXT    NOT NULL,
		ended_at      TEXT    NOT NULL,
		result        TEXT    NOT NULL CHECK (result IN ('success','failure','skipped','panic','timeout','cancelled')),
		error         TEXT    NOT NULL DEFAULT '',
		rows_affected INTEGER NOT NULL DEFAULT 0
	);
	CREATE INDEX job_runs_job_started ON job_runs (job, started_at);
	CREATE INDEX job_runs_ended ON job_runs (ended_at);
	CREATE TABLE heartbeat (
		id         INTEGER PRIMARY KEY CHECK (id = 1),
		pid        INTEGER NOT NULL,
		hostname   TEXT    NOT NULL,
		version    TEXT    NOT NULL,
		started_at TEXT    NOT NULL,
		beat_at    TEXT    NOT NULL
	);
	INSERT INTO job_runs (job, scheduled_at, started_at, ended_at, result)
		VALUES ('old', '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.001Z', '2026-01-01T00:00:00.002Z', 'success');
	PRAGMA user_version = 1;`

// Ensure a database of the first schema version is migrated: its rows get
// attempt 1 and jitter_ms 0, LastScheduled finds its last tick, and new
// rows keep their attempt and jitter.
func TestMigrate_AttemptJitter(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "worker.db")
	old, err := sql.Open("sqlite3", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := old.Exec(schemaV1); err != nil {
		t.Fatal(err)
	}
	old.Close()
	h := workertest.MustOpenHandleWith(t, db.Config{Path: path})
	d, err := h.Init(ctx)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC)
	if err := jobhistory.InsertRuns(ctx, d, []jobhistory.RunRow{{Job: "old", ScheduledAt: at, StartedAt: at, EndedAt: at, Result: "failure",
		Attempt: 3, Jitter: 1500 * time.Millisecond}}); err != nil {
		t.Fatal(err)
	}
	got := workertest.Strings(t, d, "SELECT scheduled_at || ' ' || attempt || ' ' || jitter_ms FROM job_runs ORDER BY id")
	if want := []string{"2026-01-01T00:00:00.000Z 1 0", "2026-01-02T00:00:00.000Z 3 1500"}; len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("rows: got %q, want %q", got, want)
	}
	last, ok, err := jobhistory.LastScheduled(ctx, d, "old")
	if err != nil || !ok || !last.Equal(at) {
		t.Fatalf("LastScheduled: got %v %v %v, want %v true nil", last, ok, err, at)
	}
	if _, ok, err := jobhistory.LastScheduled(ctx, d, "none"); err != nil || ok {
		t.Fatalf("LastScheduled of a job with no row: got %v %v, want false nil", ok, err)
	}
}
