// Package sqlstmt splits a job's SQL into statements, tells what kind each
// one is, and says which of them a job's SQL may not contain (Refusal), for
// both dialects: SQLite (Parser.Split) and PostgreSQL (SplitPostgres).
//
// SQLite's SQL is split and classified by SQLite's own parser: the SQLite that
// github.com/mattn/go-sqlite3 compiles into the binary, on a private
// in-memory database. It does not guess with regular expressions: a COMMIT
// in a string literal, a comment or a trigger's BEGIN … END is not a COMMIT.
//
// Each statement is prepared, never run, with an authorizer
// (sqlite3_set_authorizer) that records the action SQLite reports for it:
// SQLITE_TRANSACTION for BEGIN, COMMIT, END and ROLLBACK, SQLITE_SAVEPOINT for
// SAVEPOINT, RELEASE and ROLLBACK TO, SQLITE_PRAGMA with the pragma's name and
// value, SQLITE_ATTACH and SQLITE_DETACH. Pragmas are answered SQLITE_IGNORE,
// so that none takes effect while it is prepared (some act at prepare time,
// soft_heap_limit on the whole process). VACUUM, which has no action of its
// own, is recognised by the Vacuum opcode of its EXPLAIN.
//
// A statement that does not prepare on an empty database, because a table
// it names does not exist there, is an ordinary statement (Kind Other, Err
// set). Its end is then found with sqlite3_complete, which knows string
// literals, comments and trigger bodies.
package sqlstmt

/*
#include <stdlib.h>
#include <string.h>

// The declarations of sqlite3.h this package uses; the definitions are in
// the SQLite that go-sqlite3 links into the binary.
typedef struct sqlite3 sqlite3;
typedef struct sqlite3_stmt sqlite3_stmt;
extern int sqlite3_open_v2(const char *filename, sqlite3 **db, int flags, const char *vfs);
extern int sqlite3_close(sqlite3 *db);
extern int sqlite3_prepare_v2(sqlite3 *db, const char *sql, int n, sqlite3_stmt **stmt, const char **tail);
extern int sqlite3_step(sqlite3_stmt *stmt);
extern int sqlite3_finalize(sqlite3_stmt *stmt);
extern const unsigned char *sqlite3_column_text(sqlite3_stmt *stmt, int col);
extern int sqlite3_stmt_isexplain(sqlite3_stmt *stmt);
extern int sqlite3_complete(const char *sql);
extern const char *sqlite3_errmsg(sqlite3 *db);
extern int sqlite3_set_authorizer(sqlite3 *db,
	int (*auth)(void *, int, const char *, const char *, const char *, const char *), void *arg);

enum {
	OPEN_READWRITE = 0x02, OPEN_CREATE = 0x04, OPEN_MEMORY = 0x80, OPEN_NOMUTEX = 0x8000,
	AUTH_PRAGMA = 19, AUTH_TRANSACTION = 22, AUTH_ATTACH = 24, AUTH_DETACH = 25, AUTH_SAVEPOINT = 32,
	AUTH_OK = 0, AUTH_IGNORE = 2, ROW = 100,
};

// event is the first action of interest the authorizer saw.
typedef struct {
	int code;
	char arg1[128], arg2[128];
	int has_arg2;
} event;

static void copy_arg(char *dst, const char *src) {
	if (src) {
		strncpy(dst, src, 127);
		dst[127] = 0;
	}
}

static int authorize(void *p, int code, const char *a1, const char *a2, const char *db, const char *trigger) {
	event *e = p;
	switch (code) {
	case AUTH_PRAGMA: case AUTH_TRANSACTION: case AUTH_ATTACH: case AUTH_DETACH: case AUTH_SAVEPOINT:
		if (e->code == 0) {
			e->code = code;
			copy_arg(e->arg1, a1);
			copy_arg(e->arg2, a2);
			e->has_arg2 = a2 != 0;
		}
		if (code == AUTH_PRAGMA) {
			return AUTH_IGNORE;
		}
	}
	return AUTH_OK;
}

static int open_memory(sqlite3 **db) {
	return sqlite3_open_v2(":memory:", db, OPEN_READWRITE | OPEN_CREATE | OPEN_MEMORY | OPEN_NOMUTEX, 0);
}

// prepare prepares the first statement of sql[0:n], records its event, and
// reports where it ends (*tail, an offset), whether it was empty (only
// space and comments) and whether it is an EXPLAIN.
static int prepare(sqlite3 *db, const char *sql, int n, event *e, int *tail, int *empty, int *explain) {
	sqlite3_stmt *stmt = 0;
	const char *end = 0;
	memset(e, 0, sizeof *e);
	sqlite3_set_authorizer(db, authorize, e);
	int rc = sqlite3_prepare_v2(db, sql, n, &stmt, &end);
	sqlite3_set_authorizer(db, 0, 0);
	*tail = end ? (int)(end - sql) : n;
	*empty = rc == 0 && stmt == 0;
	*explain = stmt != 0 && sqlite3_stmt_isexplain(stmt);
	sqlite3_finalize(stmt);
	return rc;
}

// is_vacuum reports whether the EXPLAIN of the statement sql[0:n] has the
// Vacuum opcode; -1 when it does not prepare.
static int is_vacuum(sqlite3 *db, const char *sql, int n) {
	sqlite3_stmt *stmt = 0;
	event e;
	char *q = malloc(n + 9);
	if (!q) {
		return -1;
	}
	memcpy(q, "EXPLAIN ", 8);
	memcpy(q + 8, sql, n);
	q[n + 8] = 0;
	memset(&e, 0, sizeof e);
	sqlite3_set_authorizer(db, authorize, &e);
	int rc = sqlite3_prepare_v2(db, q, n + 8, &stmt, 0);
	sqlite3_set_authorizer(db, 0, 0);
	free(q);
	if (rc != 0 || stmt == 0) {
		sqlite3_finalize(stmt);
		return -1;
	}
	int found = 0;
	while (!found && sqlite3_step(stmt) == ROW) {
		const unsigned char *name = sqlite3_column_text(stmt, 1);
		found = name && strcmp((const char *)name, "Vacuum") == 0;
	}
	sqlite3_finalize(stmt);
	return found;
}

// complete_at reports whether buf[off:end] ends with a complete statement.
static int complete_at(char *buf, int off, int end) {
	char c = buf[end];
	buf[end] = 0;
	int r = sqlite3_complete(buf + off);
	buf[end] = c;
	return r;
}
*/
import "C"

import (
	"errors"
	"fmt"
	"strings"
	"unsafe"

	_ "github.com/mattn/go-sqlite3" // links the SQLite this package calls
)

// Kind is what a statement does, as SQLite's parser sees it.
type Kind int

// The kinds of statement Parser.Split and SplitPostgres tell apart.
const (
	Other      Kind = iota // anything else: SELECT, INSERT, CREATE TRIGGER, …
	Begin                  // BEGIN [DEFERRED|IMMEDIATE|EXCLUSIVE] [TRANSACTION]
	Commit                 // COMMIT or END [TRANSACTION]
	Rollback               // ROLLBACK [TRANSACTION]
	Savepoint              // SAVEPOINT name
	Release                // RELEASE [SAVEPOINT] name
	RollbackTo             // ROLLBACK [TRANSACTION] TO [SAVEPOINT] name
	Pragma                 // PRAGMA [schema.]name [= value | (value)]
	Attach                 // ATTACH DATABASE
	Detach                 // DETACH DATABASE
	Vacuum                 // VACUUM [schema] [INTO file]
	Set                    // PostgreSQL: SET of a session setting (not SET LOCAL)
	Reset                  // PostgreSQL: RESET or DISCARD
)

// Dialect is the SQL a Statement was read as.
type Dialect int

// The dialects: SQLite's SQL, read by its parser (Parser.Split), and
// PostgreSQL's, read by a lexical split (SplitPostgres).
const (
	SQLite Dialect = iota
	PostgreSQL
)

// MaxCompleteBytes bounds the text a Parser hands sqlite3_complete while it
// looks for the ends of statements that do not prepare: each ';' inside such
// a statement costs one call over the statement so far, so a statement with
// very many of them in string literals would cost the square of its length.
const MaxCompleteBytes = 16 << 20

// ErrTooComplex is returned when finding the ends of statements would hand
// sqlite3_complete more than MaxCompleteBytes.
var ErrTooComplex = errors.New("too many ';' inside statements to find where they end")

// Statement is one statement of an SQL text.
type Statement struct {
	Kind Kind
	// Text is the statement as written: by Parser.Split from the end of the
	// previous statement to its ';', by SplitPostgres trimmed, without it.
	Text string
	// Arg is the savepoint's name, or the pragma's name (without its
	// schema), or ATTACH's file or DETACH's schema name.
	Arg string
	// Value is the pragma's value, set with = or given as in name(value);
	// HasValue is false for a pragma that only reads.
	Value    string
	HasValue bool
	// Err is why the statement did not prepare on an empty in-memory
	// database, such as "no such table: t"; its Kind is then Other.
	Err string
	// Dialect is SQLite for Parser.Split's statements, PostgreSQL for
	// SplitPostgres's.
	Dialect Dialect
}

// Name is the statement's kind as SQL, as in "COMMIT", "SAVEPOINT a",
// "PRAGMA journal_mode"; the text on one line for an Other statement and
// for PostgreSQL's, whose split reads only the first words.
func (s Statement) Name() string {
	if s.Dialect == PostgreSQL {
		return strings.Join(strings.Fields(s.Text), " ")
	}
	switch s.Kind {
	case Begin:
		return "BEGIN"
	case Commit:
		return "COMMIT"
	case Rollback:
		return "ROLLBACK"
	case Savepoint:
		return "SAVEPOINT " + s.Arg
	case Release:
		return "RELEASE " + s.Arg
	case RollbackTo:
		return "ROLLBACK TO " + s.Arg
	case Pragma:
		return "PRAGMA " + s.Arg
	case Attach:
		return "ATTACH"
	case Detach:
		return "DETACH " + s.Arg
	case Vacuum:
		return "VACUUM"
	}
	return strings.Join(strings.Fields(s.Text), " ")
}

// Parser is a private in-memory SQLite connection that splits and
// classifies SQL. It is not safe for concurrent use.
type Parser struct {
	db     *C.sqlite3
	budget int // bytes sqlite3_complete may still be handed
}

// Open returns a Parser. Close it when done.
func Open() (*Parser, error) {
	var db *C.sqlite3
	if rc := C.open_memory(&db); rc != 0 {
		C.sqlite3_close(db)
		return nil, fmt.Errorf("cannot open an in-memory SQLite database: error %d", int(rc))
	}
	return &Parser{db: db, budget: MaxCompleteBytes}, nil
}

// Close closes the Parser's connection.
func (p *Parser) Close() error {
	if p.db == nil {
		return nil
	}
	rc := C.sqlite3_close(p.db)
	p.db = nil
	if rc != 0 {
		return fmt.Errorf("cannot close the in-memory SQLite database: error %d", int(rc))
	}
	return nil
}

// Split returns the statements of sql in order, as SQLite runs them one
// after the other; empty ones (only white space and comments) are left out.
// Nothing is run.
func (p *Parser) Split(sql string) ([]Statement, error) {
	if p.db == nil {
		return nil, errors.New("sqlstmt: Parser is closed")
	}
	if strings.IndexByte(sql, 0) >= 0 {
		return nil, errors.New("SQL contains a NUL byte")
	}
	buf := C.CString(sql)
	defer C.free(unsafe.Pointer(buf))
	var out []Statement
	for off := 0; off < len(sql); {
		var (
			ev                   C.event
			tail, empty, explain C.int
		)
		rc := C.prepare(p.db, (*C.char)(unsafe.Add(unsafe.Pointer(buf), off)), C.int(len(sql)-off), &ev, &tail, &empty, &explain)
		end := off + int(tail)
		s := Statement{}
		if rc != 0 {
			s.Err = C.GoString(C.sqlite3_errmsg(p.db))
			var err error
			if end, err = p.statementEnd(buf, sql, off, end); err != nil {
				return nil, fmt.Errorf("statement %d: %w", len(out)+1, err)
			}
		}
		if end <= off || end > len(sql) {
			end = len(sql) // cannot happen; never loop
		}
		start := off
		s.Text = sql[off:end]
		off = end
		if empty != 0 {
			continue
		}
		if rc == 0 && explain == 0 {
			s.classify(&ev)
			if s.Kind == Other {
				text := (*C.char)(unsafe.Add(unsafe.Pointer(buf), start))
				if C.is_vacuum(p.db, text, C.int(len(s.Text))) == 1 {
					s.Kind = Vacuum
				}
			}
		}
		out = append(out, s)
	}
	return out, nil
}

// classify sets the Kind and arguments from the authorizer's event.
func (s *Statement) classify(ev *C.event) {
	a1, a2 := C.GoString(&ev.arg1[0]), C.GoString(&ev.arg2[0])
	switch ev.code {
	case C.AUTH_TRANSACTION:
		switch a1 {
		case "BEGIN":
			s.Kind = Begin
		case "COMMIT":
			s.Kind = Commit
		case "ROLLBACK":
			s.Kind = Rollback
		}
	case C.AUTH_SAVEPOINT:
		s.Arg = a2
		switch a1 {
		case "BEGIN":
			s.Kind = Savepoint
		case "RELEASE":
			s.Kind = Release
		case "ROLLBACK":
			s.Kind = RollbackTo
		}
	case C.AUTH_PRAGMA:
		s.Kind, s.Arg, s.Value, s.HasValue = Pragma, strings.ToLower(a1), a2, ev.has_arg2 != 0
	case C.AUTH_ATTACH:
		s.Kind, s.Arg = Attach, a1
	case C.AUTH_DETACH:
		s.Kind, s.Arg = Detach, a1
	}
}

// statementEnd returns the end of the statement that starts at off and did
// not prepare; the parser stopped at from, at or before its end. The end is
// just past the first ';' from there that sqlite3_complete says completes
// the statement, or the end of sql.
func (p *Parser) statementEnd(buf *C.char, sql string, off, from int) (int, error) {
	if from < off {
		from = off
	}
	// The parser usually stops just past the statement's ';'.
	i := from - 1
	if i < off || sql[i] != ';' {
		j := strings.IndexByte(sql[from:], ';')
		if j < 0 {
			return len(sql), nil
		}
		i = from + j
	}
	for i >= off && i < len(sql) {
		if p.budget -= i + 1 - off; p.budget < 0 {
			return 0, ErrTooComplex
		}
		if C.complete_at(buf, C.int(off), C.int(i+1)) != 0 {
			return i + 1, nil
		}
		j := strings.IndexByte(sql[i+1:], ';')
		if j < 0 {
			break
		}
		i += 1 + j
	}
	return len(sql), nil
}
