package config

import (
	"strings"
	"testing"
)

// sqlJob is a config with one job whose SQL is sql, in a block scalar.
func sqlJob(sql string) string {
	return "jobs:\n  - name: rollup\n    schedule: '@hourly'\n    sql: |\n      " +
		strings.ReplaceAll(sql, "\n", "\n      ") + "\n"
}

func TestParse_TransactionControl(t *testing.T) {
	const (
		begin    = "starts a transaction inside the job's; the worker runs each job's SQL in one transaction"
		commit   = "ends the job's transaction; the worker commits after the last statement"
		rollback = "ends the job's transaction; the worker rolls back a job that fails"
		nests    = "nests a transaction in the job's; a job's SQL commits or rolls back as a whole"
		journal  = "changes the journal mode; the worker keeps the database in WAL mode"
		conn     = "changes a setting of the connection it runs on, which the worker sets and every job shares"
		inTx     = "cannot run inside the job's transaction"
	)
	tests := []struct {
		name, sql, want string // want "" : accepted
	}{
		// The two of issue 12.
		{"CommitAfterInsert", "CREATE TABLE IF NOT EXISTS t (x);\nINSERT INTO t VALUES (1);\nCOMMIT",
			"jobs[0].sql: statement 3 (COMMIT) " + commit},
		{"JournalModeBetweenCommitAndBegin", "COMMIT; PRAGMA journal_mode=DELETE; BEGIN",
			"jobs[0].sql: statement 1 (COMMIT) " + commit},
		{"JournalMode", "DELETE FROM t; PRAGMA journal_mode = DELETE", "jobs[0].sql: statement 2 (PRAGMA journal_mode) " + journal},
		{"JournalModeOfSchema", "PRAGMA main.journal_mode=MEMORY", "jobs[0].sql: statement 1 (PRAGMA journal_mode) " + journal},

		{"Begin", "BEGIN IMMEDIATE; DELETE FROM t", "jobs[0].sql: statement 1 (BEGIN) " + begin},
		{"BeginLowerCase", "begin deferred transaction", "jobs[0].sql: statement 1 (BEGIN) " + begin},
		{"End", "DELETE FROM t; END TRANSACTION", "jobs[0].sql: statement 2 (COMMIT) " + commit},
		{"Rollback", "DELETE FROM t;\nROLLBACK;", "jobs[0].sql: statement 2 (ROLLBACK) " + rollback},
		{"Savepoint", "SAVEPOINT s1; DELETE FROM t", "jobs[0].sql: statement 1 (SAVEPOINT s1) " + nests},
		{"Release", "DELETE FROM t; RELEASE SAVEPOINT s1", "jobs[0].sql: statement 2 (RELEASE s1) " + nests},
		{"RollbackTo", "DELETE FROM t; ROLLBACK TO s1", "jobs[0].sql: statement 2 (ROLLBACK TO s1) " + nests},
		{"LockingMode", "PRAGMA locking_mode = EXCLUSIVE", "jobs[0].sql: statement 1 (PRAGMA locking_mode) " + conn},
		{"BusyTimeout", "PRAGMA busy_timeout=0; DELETE FROM t", "jobs[0].sql: statement 1 (PRAGMA busy_timeout) " + conn},
		{"ForeignKeysOff", "PRAGMA foreign_keys = OFF", "jobs[0].sql: statement 1 (PRAGMA foreign_keys) " + conn},
		{"QueryOnly", "PRAGMA query_only(1)", "jobs[0].sql: statement 1 (PRAGMA query_only) " + conn},
		{"SoftHeapLimit", "PRAGMA soft_heap_limit = 1", "jobs[0].sql: statement 1 (PRAGMA soft_heap_limit) " + conn},
		{"Attach", "ATTACH DATABASE 'other.db' AS other", "jobs[0].sql: statement 1 (ATTACH) " + inTx},
		{"Detach", "DETACH other", "jobs[0].sql: statement 1 (DETACH other) " + inTx},
		{"Vacuum", "DELETE FROM t; VACUUM", "jobs[0].sql: statement 2 (VACUUM) " + inTx},
		{"AfterMissingTable", "INSERT INTO not_yet VALUES (1); COMMIT", "jobs[0].sql: statement 2 (COMMIT) " + commit},
		{"AfterCommentedCommit", "-- COMMIT;\nDELETE FROM t; /* END; */\n-- then\nCOMMIT", "jobs[0].sql: statement 2 (COMMIT) " + commit},
		{"AfterTrigger", "CREATE TRIGGER tr AFTER INSERT ON t BEGIN\n  DELETE FROM u;\nEND;\nCOMMIT;",
			"jobs[0].sql: statement 2 (COMMIT) " + commit},
		{"AfterSyntaxError", "SELEC 1; COMMIT", "jobs[0].sql: statement 2 (COMMIT) " + commit},
		{"NulByte", "SELECT 1;\x00COMMIT", "jobs[0].sql: SQL contains a NUL byte"},

		// Fine: SQLite's parser sees no transaction control.
		{"MultiStatement", "CREATE TABLE IF NOT EXISTS daily (day, n);\nINSERT INTO daily SELECT date(), count(*) FROM events;\nDELETE FROM events;", ""},
		{"Trigger", "CREATE TRIGGER IF NOT EXISTS audit AFTER DELETE ON events BEGIN\n  INSERT INTO log VALUES ('COMMIT');\n  SELECT 1;\nEND;", ""},
		{"StringLiterals", "INSERT INTO log VALUES ('COMMIT; BEGIN; PRAGMA journal_mode=DELETE');\nSELECT \"END\", 'ROLLBACK';", ""},
		{"Comments", "-- COMMIT\nDELETE FROM t; /* ROLLBACK; BEGIN; */ -- END;", ""},
		{"ReadPragmas", "PRAGMA journal_mode; PRAGMA busy_timeout; PRAGMA table_info(t); PRAGMA integrity_check(1)", ""},
		{"DatabasePragmas", "PRAGMA user_version = 3; PRAGMA optimize; PRAGMA incremental_vacuum(10)", ""},
		{"Explain", "EXPLAIN COMMIT", ""},
		{"ColumnNamedCommit", "SELECT 1 AS \"commit\", [begin] FROM t", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := sqlJob(tt.sql)
			if strings.Contains(tt.sql, "\x00") {
				doc = "jobs:\n  - {name: rollup, schedule: '@hourly', sql: \"" + strings.ReplaceAll(tt.sql, "\x00", "\\0") + "\"}\n"
			}
			_, err := Parse([]byte(doc))
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// Ensure the job field of the statement is named: the second job, and a
// job whose SQL is refused after one whose SQL is fine.
func TestParse_TransactionControlNamesTheJob(t *testing.T) {
	doc := "jobs:\n  - {name: a, schedule: '@hourly', sql: 'DELETE FROM t'}\n" +
		"  - {name: b, schedule: '@hourly', sql: 'CREATE TABLE IF NOT EXISTS t (x); INSERT INTO t VALUES (1); COMMIT'}\n"
	want := "jobs[1].sql: statement 3 (COMMIT) ends the job's transaction; the worker commits after the last statement"
	if _, err := Parse([]byte(doc)); err == nil || err.Error() != want {
		t.Errorf("got %v, want %q", err, want)
	}
}
