package sqlstmt

import (
	"errors"
	"strings"
	"testing"
)

func mustOpen(t *testing.T) *Parser {
	t.Helper()
	p, err := Open()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Error(err)
		}
	})
	return p
}

// kinds returns "Name" of each statement, or "-" for Other, joined by " | ".
func kinds(stmts []Statement) string {
	var parts []string
	for _, s := range stmts {
		if s.Kind == Other {
			parts = append(parts, "-")
			continue
		}
		n := s.Name()
		if s.Kind == Pragma && s.HasValue {
			n += "=" + s.Value
		}
		parts = append(parts, n)
	}
	return strings.Join(parts, " | ")
}

func TestSplit(t *testing.T) {
	p := mustOpen(t)
	tests := []struct {
		name, sql, want string
	}{
		{"One", "SELECT 1", "-"},
		{"Empty", " \n-- only a comment\n/* and another */;;", ""},
		{"Transaction", "BEGIN; begin immediate transaction; COMMIT; end; END TRANSACTION; ROLLBACK; rollback transaction",
			"BEGIN | BEGIN | COMMIT | COMMIT | COMMIT | ROLLBACK | ROLLBACK"},
		{"Savepoints", "SAVEPOINT a; RELEASE a; release savepoint b; ROLLBACK TO c; rollback transaction to savepoint d",
			"SAVEPOINT a | RELEASE a | RELEASE b | ROLLBACK TO c | ROLLBACK TO d"},
		{"Pragmas", "PRAGMA journal_mode; PRAGMA main.journal_mode=DELETE; pragma Locking_Mode = exclusive; PRAGMA table_info(t)",
			"PRAGMA journal_mode | PRAGMA journal_mode=DELETE | PRAGMA locking_mode=exclusive | PRAGMA table_info=t"},
		{"AttachDetachVacuum", "ATTACH 'x.db' AS x; DETACH x; VACUUM; VACUUM INTO '/tmp/y.db'",
			"ATTACH | DETACH x | VACUUM | VACUUM"},
		{"MissingTables", "INSERT INTO t VALUES (1); DELETE FROM u; COMMIT", "- | - | COMMIT"},
		{"Trigger", "CREATE TRIGGER tr AFTER INSERT ON t BEGIN INSERT INTO u VALUES (1); DELETE FROM v; END; COMMIT",
			"- | COMMIT"},
		{"TriggerOnExistingTable", "CREATE TABLE IF NOT EXISTS sqlite_x (a); CREATE TEMP TRIGGER tr AFTER INSERT ON sqlite_master BEGIN SELECT 1; END; END",
			"- | - | COMMIT"},
		{"StringLiterals", "INSERT INTO t VALUES ('COMMIT; BEGIN'); SELECT 'a;b', \"c;d\", [e;f], `g;h`", "- | -"},
		{"Comments", "-- COMMIT;\nSELECT 1; /* ROLLBACK; */ SELECT 2 -- END;", "- | -"},
		{"CommentBeforeCommit", "SELECT 1;\n-- done\nCOMMIT", "- | COMMIT"},
		{"Explain", "EXPLAIN COMMIT; EXPLAIN QUERY PLAN SELECT 1", "- | -"},
		{"PragmaFunction", "SELECT * FROM pragma_table_info('t')", "-"},
		{"Issue12", "INSERT INTO t VALUES (1); COMMIT; PRAGMA journal_mode=DELETE; BEGIN",
			"- | COMMIT | PRAGMA journal_mode=DELETE | BEGIN"},
		{"SyntaxError", "SELEC 1; COMMIT", "- | COMMIT"},
		{"NoFinalSemicolon", "CREATE TABLE t (a); INSERT INTO t VALUES ('x;y')", "- | -"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stmts, err := p.Split(tt.sql)
			if err != nil {
				t.Fatalf("Split(%q): %v", tt.sql, err)
			}
			if got := kinds(stmts); got != tt.want {
				t.Errorf("Split(%q): got %q, want %q", tt.sql, got, tt.want)
			}
			// The statements are the text, in order, without overlap.
			var joined strings.Builder
			for _, s := range stmts {
				joined.WriteString(s.Text)
			}
			if got := joined.String(); !strings.Contains(tt.sql, strings.TrimSpace(got)) && len(stmts) > 0 {
				t.Errorf("Split(%q): statements %q are not the text", tt.sql, got)
			}
		})
	}
}

// Ensure each statement's text and error are what SQLite saw.
func TestSplit_Text(t *testing.T) {
	p := mustOpen(t)
	stmts, err := p.Split("CREATE TABLE a (x);\n  INSERT INTO b VALUES ('1;2');\n-- c\nCOMMIT")
	if err != nil {
		t.Fatal(err)
	}
	want := []struct{ text, err string }{
		{"CREATE TABLE a (x);", ""},
		{"\n  INSERT INTO b VALUES ('1;2');", "no such table: b"},
		{"\n-- c\nCOMMIT", ""},
	}
	if len(stmts) != len(want) {
		t.Fatalf("got %d statements %+v, want %d", len(stmts), stmts, len(want))
	}
	for i, w := range want {
		if stmts[i].Text != w.text || stmts[i].Err != w.err {
			t.Errorf("statement %d: got %q (err %q), want %q (err %q)", i+1, stmts[i].Text, stmts[i].Err, w.text, w.err)
		}
	}
}

// Ensure preparing a pragma does not run it: soft_heap_limit acts at
// prepare time, on the whole process.
func TestSplit_PragmaNotRun(t *testing.T) {
	p := mustOpen(t)
	if _, err := p.Split("PRAGMA soft_heap_limit = 12345; PRAGMA hard_heap_limit = 4096"); err != nil {
		t.Fatal(err)
	}
	if limit := queryOne(t, "PRAGMA soft_heap_limit"); limit == "12345" {
		t.Errorf("soft_heap_limit: got %s, want it unchanged by Split", limit)
	}
}

// Ensure a statement with very many ';' inside, that stops the parser
// early (a trigger on a table that does not exist yet), is refused rather
// than checked in quadratic time.
func TestSplit_TooComplex(t *testing.T) {
	p := mustOpen(t)
	sql := "CREATE TRIGGER tr AFTER INSERT ON t BEGIN " + strings.Repeat("SELECT 1;", 20000) + " END"
	if _, err := p.Split(sql); !errors.Is(err, ErrTooComplex) {
		t.Errorf("got %v, want ErrTooComplex", err)
	}
	// A few hundred are checked.
	sql = "CREATE TRIGGER tr AFTER INSERT ON t BEGIN " + strings.Repeat("SELECT 1;", 300) + " END; COMMIT"
	stmts, err := mustOpen(t).Split(sql)
	if err != nil {
		t.Fatal(err)
	}
	if got := kinds(stmts); got != "- | COMMIT" {
		t.Errorf("got %q, want %q", got, "- | COMMIT")
	}
	// A literal with many ';' costs nothing: the parser stops past it.
	sql = "INSERT INTO t VALUES ('" + strings.Repeat(";", 100000) + "'); COMMIT"
	if stmts, err = mustOpen(t).Split(sql); err != nil {
		t.Fatal(err)
	}
	if got := kinds(stmts); got != "- | COMMIT" {
		t.Errorf("got %q, want %q", got, "- | COMMIT")
	}
	sql = "SELECT '" + strings.Repeat(";", 100000) + "'; COMMIT"
	stmts, err = mustOpen(t).Split(sql)
	if err != nil {
		t.Fatal(err)
	}
	if got := kinds(stmts); got != "- | COMMIT" {
		t.Errorf("got %q, want %q", got, "- | COMMIT")
	}
}

func TestSplit_Closed(t *testing.T) {
	p, err := Open()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Split("SELECT 1"); err == nil {
		t.Error("Split after Close: got nil error, want one")
	}
}
