package db

import "github.com/sqlworker/worker/sqlcount"

// RecordStatementOrigins makes the process-wide accounting record where
// each prepared statement was prepared (the sqlcount.stmts profile), besides
// where each handle and connection was opened, which it records anyway. A
// statement is prepared far more often than a handle is opened, so sqlcount
// leaves this off by default; the worker asks for it with pprof, where the
// soak reads a statement leak's origin.
func RecordStatementOrigins() {
	accounting.SetOrigins(sqlcount.Handles, sqlcount.Connections, sqlcount.Statements)
}
