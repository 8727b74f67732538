// Package schema owns the worker's tables: the migrations of each backend
// (SQLite's, recorded in PRAGMA user_version; PostgreSQL's, job_claims
// among them, recorded in worker_schema_version under one advisory lock),
// and the inspection and repair of an SQLite file's schema before the
// worker writes to it.
package schema

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"

	"github.com/mattn/go-sqlite3"
)

// migrations are applied in order; PRAGMA user_version records how many
// have run. Append only: never edit one that has shipped.
var migrations = []string{
	// 1: run history and the liveness row.
	`CREATE TABLE job_runs (
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
	);`,
	// 2: which attempt of a run a row is (retries), the random delay of
	// the run (jitter), and the index catch-up finds a job's last tick by.
	`ALTER TABLE job_runs ADD COLUMN attempt INTEGER NOT NULL DEFAULT 1;
	ALTER TABLE job_runs ADD COLUMN jitter_ms INTEGER NOT NULL DEFAULT 0;
	CREATE INDEX job_runs_job_scheduled ON job_runs (job, scheduled_at);`,
	// 3: paused jobs (internal/jobhistory/pause.go): one row per paused job, gone on resume.
	`CREATE TABLE job_pauses (
		job       TEXT PRIMARY KEY,
		reason    TEXT NOT NULL DEFAULT '',
		paused_at TEXT NOT NULL,
		paused_by TEXT NOT NULL DEFAULT ''
	);`,
}

// SQLiteVersion is the user_version of a fully migrated SQLite database.
var SQLiteVersion = len(migrations)

// MigrateSQLite applies the migrations that the database has not seen, each in its
// own transaction, so a crash leaves the database at a whole version.
func MigrateSQLite(ctx context.Context, db *sql.DB) error {
	for {
		done, err := migrateOne(ctx, db)
		if err != nil || done {
			return err
		}
	}
}

func migrateOne(ctx context.Context, db *sql.DB) (done bool, err error) {
	tx, err := db.BeginTx(ctx, nil) // BEGIN IMMEDIATE: a second migrator waits
	if err != nil {
		return false, err
	}
	defer tx.Rollback()
	var v int
	if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return false, err
	}
	switch {
	case v == len(migrations):
		return true, nil
	case v > len(migrations):
		return false, fmt.Errorf("schema version %d is newer than this worker's %d", v, len(migrations))
	}
	if _, err := tx.ExecContext(ctx, migrations[v]); err != nil {
		return false, fmt.Errorf("migration %d: %w", v+1, err)
	}
	if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", v+1)); err != nil {
		return false, fmt.Errorf("migration %d: %w", v+1, err)
	}
	return false, tx.Commit()
}

// rawConnector is go-sqlite3 without counting, whatever "sqlite3" is: for
// the handles that must stay out of the counts (the read-only inspection,
// the leak build's bypass).
type rawConnector struct{ dsn string }

func (c rawConnector) Connect(context.Context) (driver.Conn, error) {
	return (&sqlite3.SQLiteDriver{}).Open(c.dsn)
}

func (rawConnector) Driver() driver.Driver { return &sqlite3.SQLiteDriver{} }

// OpenRaw opens dsn on go-sqlite3 without internal/db's counting driver.
func OpenRaw(dsn string) *sql.DB { return sql.OpenDB(rawConnector{dsn: dsn}) }
