package sqlstmt

// jobs.SQLFunc runs a job's SQL inside one transaction (BEGIN IMMEDIATE …
// COMMIT on SQLite) on a pooled connection that the worker's other jobs
// share. A statement that ends, starts or nests that transaction made
// history lie (`…; INSERT …; COMMIT` was recorded as a failure but
// committed), and one that changes the connection's settings changes them
// for every later job on it (`COMMIT; PRAGMA journal_mode=DELETE; BEGIN` was
// recorded as a success and left the database out of WAL). So such
// statements are refused at config check.
//
// On PostgreSQL the split is lexical (SplitPostgres) and cannot see inside a
// DO block or a function or procedure that the SQL calls: the server
// refuses a COMMIT there inside the job's transaction ("invalid transaction
// termination"), and the run is recorded as a failure.

// connectionPragmas change a setting of the connection they run on, or of
// the whole process, when given a value; reading them is fine. The worker
// sets some (busy_timeout, foreign_keys, synchronous, max_page_count) on
// every connection, and every job shares the pool's connections. Pragmas
// that write the database itself inside the transaction (user_version,
// application_id) and those that only read or check (table_info,
// integrity_check, optimize, …) are allowed.
var connectionPragmas = map[string]bool{
	"analysis_limit": true, "automatic_index": true, "busy_timeout": true, "cache_size": true,
	"cache_spill": true, "case_sensitive_like": true, "cell_size_check": true, "checkpoint_fullfsync": true,
	"foreign_keys": true, "fullfsync": true, "hard_heap_limit": true, "ignore_check_constraints": true,
	"journal_size_limit": true, "legacy_alter_table": true, "locking_mode": true,
	"max_page_count": true, "mmap_size": true, "query_only": true, "read_uncommitted": true,
	"recursive_triggers": true, "reverse_unordered_selects": true, "schema_version": true,
	"secure_delete": true, "soft_heap_limit": true, "synchronous": true, "temp_store": true,
	"threads": true, "trusted_schema": true, "wal_autocheckpoint": true, "writable_schema": true,
}

// Refusal says why a job's SQL may not contain s, in either dialect, or ""
// when it may.
func Refusal(s Statement) string {
	switch s.Kind {
	case Begin:
		return "starts a transaction inside the job's; the worker runs each job's SQL in one transaction"
	case Commit:
		return "ends the job's transaction; the worker commits after the last statement"
	case Rollback:
		return "ends the job's transaction; the worker rolls back a job that fails"
	case Savepoint, Release, RollbackTo:
		return "nests a transaction in the job's; a job's SQL commits or rolls back as a whole"
	case Pragma:
		switch {
		case !s.HasValue:
			return ""
		case s.Arg == "journal_mode":
			return "changes the journal mode; the worker keeps the database in WAL mode"
		case connectionPragmas[s.Arg]:
			return "changes a setting of the connection it runs on, which the worker sets and every job shares"
		}
	case Attach, Detach, Vacuum:
		return "cannot run inside the job's transaction"
	case Set:
		return "changes a setting of the session, which every job on the pooled connection shares; use SET LOCAL"
	case Reset:
		return "changes the settings of the session, which every job on the pooled connection shares"
	}
	return ""
}
