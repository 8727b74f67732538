package config

import (
	"fmt"

	"github.com/sqlworker/worker/internal/sqlstmt"
)

// A job's SQL runs in one transaction on a pooled connection that every job
// shares, so statements that end, start or nest that transaction, or change
// the connection's settings, are refused at config check. Package sqlstmt
// splits the SQL and says which statements are refused (sqlstmt.Refusal);
// this file names the field.

// checkSQL refuses a job's SQL for SQLite that has a statement
// sqlstmt.Refusal names, or that p cannot split.
func checkSQL(p *sqlstmt.Parser, field, sql string) error {
	stmts, err := p.Split(sql)
	return refuseSQL(field, stmts, err)
}

// checkPostgresSQL refuses a job's SQL for PostgreSQL that has a statement
// sqlstmt.Refusal names, or that the split cannot read to its end.
func checkPostgresSQL(field, sql string) error {
	stmts, err := sqlstmt.SplitPostgres(sql)
	return refuseSQL(field, stmts, err)
}

// refuseSQL is the error, naming field, for the split's error or the first
// statement refused.
func refuseSQL(field string, stmts []sqlstmt.Statement, err error) error {
	if err != nil {
		return fmt.Errorf("%s: %w", field, err)
	}
	for i, s := range stmts {
		if why := sqlstmt.Refusal(s); why != "" {
			return fmt.Errorf("%s: statement %d (%s) %s", field, i+1, truncate(oneLine(s.Name()), 64), why)
		}
	}
	return nil
}
