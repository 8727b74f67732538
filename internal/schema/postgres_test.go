package schema

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"go.uber.org/goleak"

	"github.com/sqlworker/worker/internal/pgtest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// open opens a handle of its own on dsn, closed at cleanup.
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

// oldClaimsMigrate is internal/claim's Migrate as the workers before
// migration 3 ran it: its statements, one by one, under its own lock.
func oldClaimsMigrate(t testing.TB, db *sql.DB) {
	t.Helper()
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback() }()
	if _, err := tx.Exec(`SELECT pg_advisory_xact_lock($1)`, claimsLock); err != nil {
		t.Fatal(err)
	}
	for _, stmt := range claimsSchema {
		if _, err := tx.Exec(stmt); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}

// Ensure that a database an older worker left at schema version 2 is
// migrated to PostgresVersion, by replicas starting together: job_claims
// is created where it was missing, and where an older Claimer had made it
// (of this release's shape, or of the first one's, before 'skipped',
// 'buffered' and cancel_requested), its rows are kept and it gets what it
// lacks.
func TestMigratePostgres_FromVersion2(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, db *sql.DB)
		rows  int // job_claims rows the setup wrote
	}{
		{"without job_claims", func(*testing.T, *sql.DB) {}, 0},
		{"with job_claims", func(t *testing.T, db *sql.DB) {
			oldClaimsMigrate(t, db)
			if _, err := db.Exec(`INSERT INTO job_claims VALUES ('j', now() - interval '1 minute', 'x', 1, now(), 'buffered', now(), now())`); err != nil {
				t.Fatal(err)
			}
		}, 1},
		{"with the first job_claims", func(t *testing.T, db *sql.DB) {
			if _, err := db.Exec(`CREATE TABLE job_claims (
	job text NOT NULL, scheduled_at timestamptz NOT NULL, owner text NOT NULL, attempt integer NOT NULL,
	lease_until timestamptz NOT NULL,
	status text NOT NULL CHECK (status IN ('running', 'succeeded', 'failed', 'missed')),
	started_at timestamptz NOT NULL, finished_at timestamptz, PRIMARY KEY (job, scheduled_at));
INSERT INTO job_claims VALUES ('j', now() - interval '1 minute', 'x', 1, now(), 'succeeded', now(), now())`); err != nil {
				t.Fatal(err)
			}
		}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			db := open(t, pgtest.Start(t))
			atVersion2(t, db)
			tc.setup(t, db)
			migrateTogether(t, db, 3)
			checkMigrated(t, db, tc.rows)
		})
	}
}

// atVersion2 gives db the schema of a worker before migration 3.
func atVersion2(t *testing.T, db *sql.DB) {
	t.Helper()
	for _, m := range pgMigrations[:2] {
		if _, err := db.Exec(m); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.Exec(`CREATE TABLE worker_schema_version (version integer NOT NULL);
INSERT INTO worker_schema_version VALUES (2)`); err != nil {
		t.Fatal(err)
	}
}

// migrateTogether runs MigratePostgres from n goroutines at once, as
// replicas starting together do.
func migrateTogether(t *testing.T, db *sql.DB, n int) {
	t.Helper()
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { errs[i] = MigratePostgres(context.Background(), db) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("MigratePostgres %d: got %v, want nil", i, err)
		}
	}
}

// checkMigrated checks that db is at PostgresVersion, that job_claims kept
// its rows and has the current shape: the statuses, cancel_requested, and
// the indexes of one running and one buffered claim per job.
func checkMigrated(t *testing.T, db *sql.DB, rows int) {
	t.Helper()
	var v int
	if err := db.QueryRow(`SELECT version FROM worker_schema_version`).Scan(&v); err != nil || v != PostgresVersion {
		t.Fatalf("worker_schema_version: got %d (%v), want %d", v, err, PostgresVersion)
	}
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM job_claims`).Scan(&n); err != nil || n != rows {
		t.Fatalf("job_claims rows: got %d (%v), want %d", n, err, rows)
	}
	const insert = `INSERT INTO job_claims (job, scheduled_at, owner, attempt, lease_until, status, started_at, cancel_requested)
VALUES ('k', $1, 'x', 1, now(), $2, now(), NULL)`
	tick := time.Now().Truncate(time.Second)
	for i, status := range []string{"running", "buffered", "skipped", "missed"} {
		if _, err := db.Exec(insert, tick.Add(time.Duration(i)*time.Second), status); err != nil {
			t.Fatalf("a %s claim: got %v, want nil", status, err)
		}
	}
	for i, status := range []string{"running", "buffered", "bogus"} {
		if _, err := db.Exec(insert, tick.Add(time.Duration(10+i)*time.Second), status); err == nil {
			t.Errorf("a second %s claim: got nil, want a violation", status)
		}
	}
}

// Ensure that a fully migrated database is left as it is, and that one of
// a newer worker is refused with the versions named.
func TestMigratePostgres_Current(t *testing.T) {
	t.Parallel()
	db := open(t, pgtest.Start(t))
	migrateTogether(t, db, 2)
	checkMigrated(t, db, 0)
	if _, err := db.Exec(`UPDATE worker_schema_version SET version = 99`); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("schema version 99 is newer than this worker's %d", PostgresVersion)
	if err := MigratePostgres(context.Background(), db); err == nil || err.Error() != want {
		t.Fatalf("MigratePostgres on a newer schema: got %v, want %q", err, want)
	}
}
