package schema

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
)

// migrationLock is the key of the advisory lock the migrations run under.
const migrationLock int64 = 0x776f726b65720001 // "worker", 1

// pgMigrations are PostgreSQL's migrations, applied in order; the version
// is in worker_schema_version. Append only: never edit one that has shipped.
// The tables have the columns and indexes of SQLite's migrations, all of
// them, with timestamptz times; the heartbeat has one row per replica, keyed
// by its id.
var pgMigrations = []string{
	// 1: run history (with SQLite's migration 2: attempt, jitter_ms and the
	// catch-up index) and the liveness rows.
	`CREATE TABLE job_runs (
		id            bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
		job           text        NOT NULL,
		scheduled_at  timestamptz NOT NULL,
		started_at    timestamptz NOT NULL,
		ended_at      timestamptz NOT NULL,
		result        text        NOT NULL CHECK (result IN ('success','failure','skipped','panic','timeout','cancelled')),
		error         text        NOT NULL DEFAULT '',
		rows_affected bigint      NOT NULL DEFAULT 0,
		attempt       integer     NOT NULL DEFAULT 1,
		jitter_ms     bigint      NOT NULL DEFAULT 0
	);
	CREATE INDEX job_runs_job_started ON job_runs (job, started_at);
	CREATE INDEX job_runs_ended ON job_runs (ended_at);
	CREATE INDEX job_runs_job_scheduled ON job_runs (job, scheduled_at);
	CREATE TABLE heartbeat (
		id         text        PRIMARY KEY,
		pid        integer     NOT NULL,
		hostname   text        NOT NULL,
		version    text        NOT NULL,
		started_at timestamptz NOT NULL,
		beat_at    timestamptz NOT NULL
	);`,
	// 2: paused jobs (SQLite's migration 3).
	`CREATE TABLE job_pauses (
		job       text        PRIMARY KEY,
		reason    text        NOT NULL DEFAULT '',
		paused_at timestamptz NOT NULL,
		paused_by text        NOT NULL DEFAULT ''
	);`,
	// 3: job_claims, which internal/claim created itself, under its own
	// lock, before it was a migration: each statement is checked against
	// the catalog, so a database where an older worker made the table gets
	// only what that table lacks.
	claimsMigration,
}

// PostgresVersion is the worker_schema_version of a fully migrated
// PostgreSQL database.
var PostgresVersion = len(pgMigrations)

// MigratePostgres applies the migrations the database has not seen, each in its
// own transaction that first takes the advisory lock: replicas that start
// together wait for each other, and each sees the version the one before
// it committed. The lock is the transaction's (pg_advisory_xact_lock), so
// it goes with the commit or rollback on whichever pooled connection ran
// it; a session lock would stay with the connection.
func MigratePostgres(ctx context.Context, d *sql.DB) error {
	for {
		done, err := migratePostgresOne(ctx, d)
		if err != nil || done {
			return err
		}
	}
}

func migratePostgresOne(ctx context.Context, d *sql.DB) (done bool, err error) {
	tx, err := d.BeginTx(ctx, nil)
	if err != nil {
		return false, err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock($1)", migrationLock); err != nil {
		return false, err
	}
	if _, err := tx.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS worker_schema_version (version integer NOT NULL)"); err != nil {
		return false, err
	}
	var v int
	switch err := tx.QueryRowContext(ctx, "SELECT version FROM worker_schema_version").Scan(&v); {
	case errors.Is(err, sql.ErrNoRows):
		if _, err := tx.ExecContext(ctx, "INSERT INTO worker_schema_version (version) VALUES (0)"); err != nil {
			return false, err
		}
	case err != nil:
		return false, err
	}
	switch {
	case v == len(pgMigrations):
		return true, nil
	case v > len(pgMigrations):
		return false, fmt.Errorf("schema version %d is newer than this worker's %d", v, len(pgMigrations))
	}
	if _, err := tx.ExecContext(ctx, pgMigrations[v]); err != nil {
		return false, fmt.Errorf("migration %d: %w", v+1, err)
	}
	if _, err := tx.ExecContext(ctx, "UPDATE worker_schema_version SET version = $1", v+1); err != nil {
		return false, fmt.Errorf("migration %d: %w", v+1, err)
	}
	return false, tx.Commit()
}

// claimsLock is the pg_advisory_xact_lock key under which internal/claim
// migrated job_claims itself before migration 3 ("job_claims" in ASCII,
// truncated). Migration 3 takes it too, so that an older replica creating
// job_claims at the same moment waits for it, and it for the older one.
const claimsLock int64 = 0x6a6f625f636c61

// claimsSchema is job_claims (internal/claim): one row per tick of a job once any replica saw it
// (claimed, skipped while another run was going, or missed). The partial
// unique index allows one running claim per job, so that a slow run is not
// overlapped by the next tick on another replica. The DO block widens the
// status check of a table created before 'skipped' or 'buffered' existed.
var claimsSchema = []string{
	`CREATE TABLE IF NOT EXISTS job_claims (
	job          text        NOT NULL,
	scheduled_at timestamptz NOT NULL,
	owner        text        NOT NULL,
	attempt      integer     NOT NULL,
	lease_until  timestamptz NOT NULL,
	status       text        NOT NULL CHECK (status IN ('running', 'succeeded', 'failed', 'skipped', 'missed', 'buffered')),
	started_at   timestamptz NOT NULL,
	finished_at  timestamptz,
	PRIMARY KEY (job, scheduled_at)
)`,
	`DO $$ BEGIN
	IF to_regclass('job_claims_one_running') IS NULL THEN -- see below: no lock when there is nothing to do
		CREATE UNIQUE INDEX job_claims_one_running ON job_claims (job) WHERE status = 'running';
	END IF;
END $$`,
	`DO $$ BEGIN
	IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = 'job_claims'::regclass
		AND conname = 'job_claims_status_check' AND pg_get_constraintdef(oid) LIKE '%buffered%') THEN
		ALTER TABLE job_claims DROP CONSTRAINT IF EXISTS job_claims_status_check;
		ALTER TABLE job_claims ADD CONSTRAINT job_claims_status_check
			CHECK (status IN ('running', 'succeeded', 'failed', 'skipped', 'missed', 'buffered'));
	END IF;
END $$`,
	// Overlap policies (overlap.go): a replaced run's cancel request, and
	// one buffered tick per job. Checked in the catalog first: ALTER TABLE
	// and CREATE INDEX lock the table even when there is nothing to do, and
	// a replica migrating while others claim ticks queued their inserts
	// behind that lock, which deadlocked with their takeovers.
	`DO $$ BEGIN
	IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'job_claims'::regclass
		AND attname = 'cancel_requested' AND NOT attisdropped) THEN
		ALTER TABLE job_claims ADD COLUMN cancel_requested timestamptz;
	END IF;
	IF to_regclass('job_claims_one_buffered') IS NULL THEN
		CREATE UNIQUE INDEX job_claims_one_buffered ON job_claims (job) WHERE status = 'buffered';
	END IF;
END $$`,
}

// claimsMigration is migration 3: claimsSchema under claimsLock.
var claimsMigration = fmt.Sprintf("SELECT pg_advisory_xact_lock(%d);\n", claimsLock) + strings.Join(claimsSchema, ";\n")

// MigrateClaims runs migration 3 alone, job_claims without the worker's
// other tables and without a version, in one transaction: for a pool that
// is not a worker's handle, such as internal/claim's tests of a Claimer
// whose history has no job_runs. It is idempotent. The worker's handle
// runs MigratePostgres instead, which includes it.
func MigrateClaims(ctx context.Context, d *sql.DB) error {
	tx, err := d.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("cannot migrate job_claims: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	if _, err := tx.ExecContext(ctx, claimsMigration); err != nil {
		return fmt.Errorf("cannot migrate job_claims: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("cannot migrate job_claims: %w", err)
	}
	return nil
}
