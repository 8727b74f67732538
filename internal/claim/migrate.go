package claim

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// migrateLock is the pg_advisory_xact_lock key that serialises Migrate
// between replicas starting together ("job_claims" in ASCII, truncated).
const migrateLock = 0x6a6f625f636c61

// schema is job_claims: one row per tick of a job once any replica saw it
// (claimed, skipped while another run was going, or missed). The partial
// unique index allows one running claim per job, so that a slow run is not
// overlapped by the next tick on another replica. The DO block widens the
// status check of a table created before 'skipped' or 'buffered' existed.
var schema = []string{
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

// Migrate creates job_claims and its index if they do not exist, in one
// transaction under a transaction-level advisory lock (a session lock would
// stay on a pooled connection). It is idempotent and safe to run from every
// replica at once. A Claimer runs it before its first statement; the
// PostgreSQL backend may run it with its own migrations too.
func Migrate(ctx context.Context, db *sql.DB) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("cannot migrate job_claims: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(migrateLock)); err != nil {
		return fmt.Errorf("cannot lock job_claims for migration: %w", err)
	}
	for _, stmt := range schema {
		if _, err := tx.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("cannot migrate job_claims: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("cannot migrate job_claims: %w", err)
	}
	return nil
}

// Prune deletes the finished and missed claims of ticks scheduled more than
// olderThan before the server's now(), keeping each job's newest claim (the
// missed-tick check counts only ticks after a job's first claim). Running
// and buffered claims are kept whatever their age. It returns the rows deleted. The
// worker's history pruning can call it; olderThan should exceed the missed
// grace and the lease.
func Prune(ctx context.Context, db *sql.DB, olderThan time.Duration) (int64, error) {
	if olderThan <= 0 {
		return 0, fmt.Errorf("claim: Prune: olderThan %s must be positive", olderThan)
	}
	res, err := db.ExecContext(ctx, `DELETE FROM job_claims c
WHERE status NOT IN ('running', 'buffered') AND scheduled_at < now() - $1 * interval '1 microsecond'
	AND scheduled_at < (SELECT max(scheduled_at) FROM job_claims n WHERE n.job = c.job)`, olderThan.Microseconds())
	if err != nil {
		return 0, fmt.Errorf("cannot prune job_claims: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("cannot prune job_claims: %w", err)
	}
	return n, nil
}
