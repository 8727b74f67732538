package config

import (
	"fmt"
	"strings"

	"github.com/sqlworker/worker/internal/sqlstmt"
)

// jobs.SQLFunc runs a job's SQL inside BEGIN IMMEDIATE … COMMIT on a pooled
// connection that the worker's other jobs share. A statement that ends,
// starts or nests that transaction made history lie (`…; INSERT …; COMMIT`
// was recorded as a failure but committed), and one that changes the
// connection's settings changes them for every later job on it
// (`COMMIT; PRAGMA journal_mode=DELETE; BEGIN` was recorded as a success and
// left the database out of WAL). So such statements are refused at config
// check, found by SQLite's own parser (package sqlstmt).

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

// refusal says why a job's SQL may not contain s, or "" when it may.
func refusal(s sqlstmt.Statement) string {
	switch s.Kind {
	case sqlstmt.Begin:
		return "starts a transaction inside the job's; the worker runs each job's SQL in one transaction"
	case sqlstmt.Commit:
		return "ends the job's transaction; the worker commits after the last statement"
	case sqlstmt.Rollback:
		return "ends the job's transaction; the worker rolls back a job that fails"
	case sqlstmt.Savepoint, sqlstmt.Release, sqlstmt.RollbackTo:
		return "nests a transaction in the job's; a job's SQL commits or rolls back as a whole"
	case sqlstmt.Pragma:
		switch {
		case !s.HasValue:
			return ""
		case s.Arg == "journal_mode":
			return "changes the journal mode; the worker keeps the database in WAL mode"
		case connectionPragmas[s.Arg]:
			return "changes a setting of the connection it runs on, which the worker sets and every job shares"
		}
	case sqlstmt.Attach, sqlstmt.Detach, sqlstmt.Vacuum:
		return "cannot run inside the job's transaction"
	}
	return ""
}

// checkSQL refuses a job's SQL that contains a statement refusal names.
func checkSQL(p *sqlstmt.Parser, field, sql string) error {
	stmts, err := p.Split(sql)
	if err != nil {
		return fmt.Errorf("%s: %w", field, err)
	}
	for i, s := range stmts {
		if why := refusal(s); why != "" {
			return fmt.Errorf("%s: statement %d (%s) %s", field, i+1, truncate(oneLine(s.Name()), 64), why)
		}
	}
	return nil
}

// On PostgreSQL, jobs.SQLFunc runs a job's SQL the same way, in one
// transaction on a shared pooled connection, and the same statements would
// make history lie or change the session for every later job. SQLite's
// parser cannot read PostgreSQL's SQL, so checkPostgresSQL is a
// conservative lexical check: it splits the SQL at the semicolons outside
// comments, quoted strings, quoted identifiers and dollar-quoted bodies, and
// looks at the first words of each statement. It refuses transaction
// control (BEGIN, START TRANSACTION, COMMIT, END, ROLLBACK, ABORT,
// SAVEPOINT, RELEASE, PREPARE TRANSACTION), session settings (SET without
// LOCAL, other than SET TRANSACTION and SET CONSTRAINTS, which hold for the
// transaction; RESET; DISCARD) and VACUUM, which cannot run in a
// transaction. It does not check syntax, names or types, and cannot see
// inside a DO block or a function or procedure that the SQL calls: the
// server refuses a COMMIT there inside the job's transaction ("invalid
// transaction termination"), and the run is recorded as a failure.

// pgRefusal says why a job's SQL may not contain a statement that starts
// with the words w (upper case), or "" when it may.
func pgRefusal(w []string) string {
	word := func(i int) string {
		if i < len(w) {
			return w[i]
		}
		return ""
	}
	switch word(0) {
	case "BEGIN", "START":
		return "starts a transaction inside the job's; the worker runs each job's SQL in one transaction"
	case "COMMIT", "END":
		return "ends the job's transaction; the worker commits after the last statement"
	case "ROLLBACK", "ABORT":
		if word(1) == "TO" || word(2) == "TO" { // ROLLBACK [WORK|TRANSACTION] TO
			return "nests a transaction in the job's; a job's SQL commits or rolls back as a whole"
		}
		return "ends the job's transaction; the worker rolls back a job that fails"
	case "SAVEPOINT", "RELEASE":
		return "nests a transaction in the job's; a job's SQL commits or rolls back as a whole"
	case "PREPARE":
		if word(1) == "TRANSACTION" {
			return "ends the job's transaction; the worker commits after the last statement"
		}
	case "SET":
		switch word(1) {
		case "LOCAL", "TRANSACTION", "CONSTRAINTS":
			return ""
		}
		return "changes a setting of the session, which every job on the pooled connection shares; use SET LOCAL"
	case "RESET", "DISCARD":
		return "changes the settings of the session, which every job on the pooled connection shares"
	case "VACUUM":
		return "cannot run inside the job's transaction"
	}
	return ""
}

// checkPostgresSQL refuses a job's SQL for PostgreSQL that has a statement
// pgRefusal names, or that the split cannot read to its end.
func checkPostgresSQL(field, sql string) error {
	stmts, err := splitPostgres(sql)
	if err != nil {
		return fmt.Errorf("%s: %w", field, err)
	}
	for i, s := range stmts {
		if why := pgRefusal(s.words); why != "" {
			return fmt.Errorf("%s: statement %d (%s) %s", field, i+1, truncate(oneLine(s.text), 64), why)
		}
	}
	return nil
}

// pgStatement is one statement of splitPostgres: its text and its first
// words outside comments and quotes, upper case.
type pgStatement struct {
	text  string
	words []string
}

// word notes w as one of the statement's first three words.
func (s *pgStatement) word(w string) {
	if len(s.words) < 3 {
		s.words = append(s.words, w)
	}
}

// splitPostgres splits sql at the semicolons that end statements, skipping
// comments (-- and nested /* */), 'strings' (with E” backslash escapes),
// "identifiers" and $tag$ bodies $tag$. Empty statements are dropped.
func splitPostgres(sql string) ([]pgStatement, error) {
	var (
		out   []pgStatement
		cur   pgStatement
		start int
	)
	isWord := func(c byte) bool {
		return c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c >= 0x80
	}
	end := func(i int) {
		cur.text = strings.TrimSpace(sql[start:i])
		if cur.text != "" && len(cur.words) > 0 {
			out = append(out, cur)
		}
		cur, start = pgStatement{}, i+1
	}
	for i := 0; i < len(sql); {
		c := sql[i]
		switch {
		case c == ';':
			end(i)
			i++
		case c == '-' && strings.HasPrefix(sql[i:], "--"):
			n := strings.IndexByte(sql[i:], '\n')
			if n < 0 {
				i = len(sql)
			} else {
				i += n
			}
		case c == '/' && strings.HasPrefix(sql[i:], "/*"):
			depth, j := 1, i+2
			for ; j < len(sql) && depth > 0; j++ {
				switch {
				case strings.HasPrefix(sql[j:], "/*"):
					depth++
					j++
				case strings.HasPrefix(sql[j:], "*/"):
					depth--
					j++
				}
			}
			if depth > 0 {
				return nil, fmt.Errorf("a /* comment is not closed")
			}
			i = j
		case c == '\'':
			escapes := i > 0 && (sql[i-1] == 'E' || sql[i-1] == 'e') && (i < 2 || !isWord(sql[i-2]))
			j := i + 1
			for ; j < len(sql); j++ {
				if escapes && sql[j] == '\\' {
					j++
					continue
				}
				if sql[j] == '\'' {
					if j+1 < len(sql) && sql[j+1] == '\'' {
						j++
						continue
					}
					break
				}
			}
			if j >= len(sql) {
				return nil, fmt.Errorf("a ' string is not closed")
			}
			cur.word("'")
			i = j + 1
		case c == '"':
			n := strings.IndexByte(sql[i+1:], '"')
			if n < 0 {
				return nil, fmt.Errorf(`a " identifier is not closed`)
			}
			cur.word(`"`)
			i += n + 2
		case c == '$' && (i == 0 || !isWord(sql[i-1])):
			j := i + 1
			if j < len(sql) && (sql[j] < '0' || sql[j] > '9') { // $1 is a parameter
				for j < len(sql) && isWord(sql[j]) {
					j++
				}
			}
			if j < len(sql) && sql[j] == '$' {
				tag := sql[i : j+1]
				n := strings.Index(sql[j+1:], tag)
				if n < 0 {
					return nil, fmt.Errorf("a %s body is not closed", tag)
				}
				cur.word("$")
				i = j + 1 + n + len(tag)
				continue
			}
			i = j // $1, a parameter
		case isWord(c):
			j := i
			for j < len(sql) && isWord(sql[j]) {
				j++
			}
			cur.word(strings.ToUpper(sql[i:j]))
			i = j
		default:
			if c > ' ' {
				cur.word(string(c))
			}
			i++
		}
	}
	end(len(sql))
	return out, nil
}
