package config

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sqlworker/worker/internal/claim"
	"github.com/sqlworker/worker/internal/db"
)

const pgURL = "postgres://worker@db.example:5432/jobs?sslmode=disable"

// Ensure database.url selects PostgreSQL: the SQLite-only built-ins are not
// offered, the replica id has its default, and the URL is shown masked.
func TestParse_Postgres(t *testing.T) {
	c, err := Parse([]byte("database:\n  url: postgres://worker:s3cret@db.example/jobs\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !c.Postgres() {
		t.Fatal("Postgres: got false, want true")
	}
	var names []string
	for _, j := range c.Jobs {
		names = append(names, j.Name)
	}
	if want := []string{Heartbeat, HistoryPrune}; !slices.Equal(names, want) {
		t.Errorf("jobs: got %v, want %v", names, want)
	}
	if c.DBReplicaID == "" {
		t.Error("DBReplicaID: got empty, want the default")
	}
	if c.Lease != claim.DefaultLease {
		t.Errorf("Lease: got %v, want %v", c.Lease, claim.DefaultLease)
	}
	if got, want := c.Database(), "postgres://worker:xxxxx@db.example/jobs"; got != want {
		t.Errorf("Database: got %v, want %v", got, want)
	}
	d := Default()
	if d.Postgres() || d.Database() != db.DefaultPath || len(d.Jobs) != len(BuiltinNames) {
		t.Errorf("Default: got %v with %d jobs, want SQLite at %v with every built-in", d.Database(), len(d.Jobs), db.DefaultPath)
	}
}

// Ensure each mistake of the PostgreSQL settings is one error naming the
// field or flag, never with the password.
func TestParse_PostgresErrors(t *testing.T) {
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "pw")
	if err := os.WriteFile(pwFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, yaml string
		o          Overrides
		want       string // "" : accepted
	}{
		{"PathAndURL", "database:\n  path: w.db\n  url: " + pgURL + "\n", Overrides{},
			"database.url: cannot be set together with database.path"},
		{"FlagURLAndFilePath", "database:\n  path: w.db\n", Overrides{DBURL: pgURL},
			"--db.url: cannot be set together with database.path"},
		{"FlagURLAndFlagPath", "", Overrides{DBURL: pgURL, DBPath: "w.db"},
			"--db.url: cannot be set together with --db.path"},
		{"FlagURLOverFileURL", "database:\n  url: postgres://other/x\n", Overrides{DBURL: pgURL}, ""},
		{"UnknownParam", "database:\n  url: " + pgURL + "&pool_max_conns=4\n", Overrides{},
			`database.url: unknown parameter "pool_max_conns"`},
		{"FlagUnknownParam", "", Overrides{DBURL: "postgres://u:s3cret@h/db?colour=blue"},
			`--db.url: unknown parameter "colour"`},
		{"NotAURL", "", Overrides{DBURL: "postgres://u:s3cret@h:port/db"}, "--db.url: not a URL"},
		{"Scheme", "database:\n  url: mysql://u@h/db\n", Overrides{}, `database.url: scheme "mysql"`},
		{"BadValue", "", Overrides{DBURL: "postgres://u:s3cret@h/db?sslmode=maybe"}, "--db.url: "},
		{"ApplicationName", "", Overrides{DBURL: pgURL + "&application_name=x"}, "--db.url: parameter application_name: the worker sets it"},
		{"PasswordFile", "database:\n  url: " + pgURL + "\n  password_file: " + pwFile + "\n", Overrides{}, ""},
		{"PasswordFileMissing", "", Overrides{DBURL: pgURL, DBPasswordFile: filepath.Join(dir, "nope")},
			"--db.password-file: cannot read password file"},
		{"PasswordFileEmpty", "database:\n  url: " + pgURL + "\n  password_file: " + empty + "\n", Overrides{},
			"database.password_file: password file " + empty + " is empty"},
		{"PasswordTwice", "", Overrides{DBURL: "postgres://u:s3cret@h/db", DBPasswordFile: pwFile},
			"--db.password-file: --db.url has a password too"},
		{"PasswordFileWithoutURL", "database:\n  password_file: " + pwFile + "\n", Overrides{},
			"database.password_file: is PostgreSQL's"},
		{"ReplicaIDWithoutURL", "", Overrides{DBReplicaID: "r1"}, "--db.replica-id: is PostgreSQL's"},
		{"ReplicaID", "database:\n  url: " + pgURL + "\n  replica_id: 'has space'\n", Overrides{},
			`database.replica_id: want 1 to 56 letters`},
		{"MaxPageCount", "database:\n  url: " + pgURL + "\n  max_page_count: 10\n", Overrides{},
			"database.max_page_count: is SQLite's; not offered with database.url"},
		{"Checkpoint", "database:\n  checkpoint: external\n", Overrides{DBURL: pgURL},
			"database.checkpoint: is SQLite's; not offered with --db.url"},
		{"BusyTimeout", "database:\n  url: " + pgURL + "\n  busy_timeout: 1s\n", Overrides{},
			"database.busy_timeout: is SQLite's"},
		{"WALCheckpoint", "database:\n  url: " + pgURL + "\nbuiltin:\n  wal_checkpoint: {schedule: '@hourly'}\n", Overrides{},
			"builtin.wal_checkpoint: is SQLite's; not offered with database.url"},
		{"QuickCheck", "builtin:\n  quick_check: {enabled: true}\n", Overrides{DBURL: pgURL},
			"builtin.quick_check: is SQLite's; not offered with --db.url"},
		{"OptimizeDisabled", "builtin:\n  optimize: {enabled: false}\n", Overrides{DBURL: pgURL}, ""},
		{"Lease", "scheduler:\n  lease: 2s\n", Overrides{DBURL: pgURL}, ""},
		{"LeaseOnSQLite", "scheduler:\n  lease: 30s\n", Overrides{},
			"scheduler.lease: is for replicas on PostgreSQL; not offered on SQLite"},
		{"LeaseTooShort", "database:\n  url: " + pgURL + "\nscheduler:\n  lease: 500ms\n", Overrides{},
			"scheduler.lease: must be at least 1s, got 500ms"},
		{"LeaseZero", "scheduler:\n  lease: 0s\n", Overrides{DBURL: pgURL}, "scheduler.lease: must be positive, got 0s"},
		{"LeaseNotADuration", "scheduler:\n  lease: 15\n", Overrides{DBURL: pgURL}, `scheduler.lease: invalid duration "15"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseWith([]byte(tc.yaml), tc.o)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("got %v, want nil", err)
			case tc.want != "" && (err == nil || !strings.HasPrefix(err.Error(), tc.want)):
				t.Fatalf("got %v, want an error starting %q", err, tc.want)
			case err != nil && (strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "\n")):
				t.Fatalf("got %q, want one line without the password", err)
			}
		})
	}
}

// Ensure a PostgreSQL job's SQL is refused for transaction control and
// session settings, by statement, and that what only looks like them, in
// strings, identifiers, comments and dollar-quoted bodies, is accepted.
func TestParse_PostgresSQL(t *testing.T) {
	const (
		begin    = "starts a transaction inside the job's; the worker runs each job's SQL in one transaction"
		commit   = "ends the job's transaction; the worker commits after the last statement"
		rollback = "ends the job's transaction; the worker rolls back a job that fails"
		nests    = "nests a transaction in the job's; a job's SQL commits or rolls back as a whole"
		session  = "changes a setting of the session, which every job on the pooled connection shares; use SET LOCAL"
	)
	tests := []struct{ name, sql, want string }{
		{"CommitAfterInsert", "INSERT INTO t VALUES (1);\nCOMMIT", "jobs[0].sql: statement 2 (COMMIT) " + commit},
		{"Begin", "begin; DELETE FROM t", "jobs[0].sql: statement 1 (begin) " + begin},
		{"StartTransaction", "START TRANSACTION ISOLATION LEVEL SERIALIZABLE", "jobs[0].sql: statement 1 (START TRANSACTION ISOLATION LEVEL SERIALIZABLE) " + begin},
		{"End", "DELETE FROM t; END", "jobs[0].sql: statement 2 (END) " + commit},
		{"Abort", "ABORT", "jobs[0].sql: statement 1 (ABORT) " + rollback},
		{"RollbackTo", "SAVEPOINT a; ROLLBACK TO a", "jobs[0].sql: statement 1 (SAVEPOINT a) " + nests},
		{"RollbackWorkTo", "DELETE FROM t; ROLLBACK WORK TO SAVEPOINT a", "jobs[0].sql: statement 2 (ROLLBACK WORK TO SAVEPOINT a) " + nests},
		{"PrepareTransaction", "PREPARE TRANSACTION 'x'", "jobs[0].sql: statement 1 (PREPARE TRANSACTION 'x') " + commit},
		{"AfterComment", "/* a /* nested */ one */ -- and a line\nCOMMIT", "jobs[0].sql: statement 1 (/* a /* nested */ one */ -- and a line COMMIT) " + commit},
		{"SetSession", "SET search_path = other", "jobs[0].sql: statement 1 (SET search_path = other) " + session},
		{"Reset", "RESET ALL", "jobs[0].sql: statement 1 (RESET ALL) changes the settings of the session, which every job on the pooled connection shares"},
		{"Vacuum", "VACUUM t", "jobs[0].sql: statement 1 (VACUUM t) cannot run inside the job's transaction"},
		{"Unclosed", "SELECT 'x", "jobs[0].sql: a ' string is not closed"},
		{"UnclosedDollar", "DO $b$ BEGIN END $c$", "jobs[0].sql: a $b$ body is not closed"},

		{"SetLocal", "SET LOCAL statement_timeout = '1s'; DELETE FROM t", ""},
		{"SetTransaction", "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ; DELETE FROM t", ""},
		{"Strings", "INSERT INTO t VALUES ('x; COMMIT'), (E'\\'; COMMIT'), ('it''s; END')", ""},
		{"Identifier", `UPDATE "commit; begin" SET x = 1`, ""},
		{"DollarBody", "DO $$ BEGIN PERFORM 1; END $$; DO $f$ BEGIN NULL; END $f$", ""},
		{"Casts", "UPDATE t SET at = now()::timestamptz WHERE id = ANY('{1,2}'::int[])", ""},
		{"Upsert", "INSERT INTO c (k, n) VALUES ('a', 1) ON CONFLICT (k) DO UPDATE SET n = c.n + 1", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseWith([]byte(sqlJob(tc.sql)), Overrides{DBURL: pgURL})
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("got %v, want nil", err)
			case tc.want != "" && (err == nil || err.Error() != tc.want):
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}
