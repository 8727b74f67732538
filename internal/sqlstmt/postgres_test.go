package sqlstmt

import "testing"

func TestSplitPostgres(t *testing.T) {
	tests := []struct {
		name, sql, want string
	}{
		{"One", "SELECT 1", "-"},
		{"Empty", " \n-- only a comment\n/* and /* a nested */ one */;;", ""},
		{"Transaction", "begin; START TRANSACTION; COMMIT; END; ROLLBACK WORK; ABORT; PREPARE TRANSACTION 'x'",
			"begin | START TRANSACTION | COMMIT | END | ROLLBACK WORK | ABORT | PREPARE TRANSACTION 'x'"},
		{"Kinds", "SAVEPOINT a; RELEASE a; ROLLBACK TO a; ROLLBACK WORK TO SAVEPOINT a; SET x = 1; RESET ALL; DISCARD ALL; VACUUM",
			"SAVEPOINT a | RELEASE a | ROLLBACK TO a | ROLLBACK WORK TO SAVEPOINT a | SET x = 1 | RESET ALL | DISCARD ALL | VACUUM"},
		{"TransactionSettings", "SET LOCAL x = 1; SET TRANSACTION READ ONLY; SET CONSTRAINTS ALL DEFERRED; PREPARE q AS SELECT 1",
			"- | - | - | -"},
		{"Quotes", "INSERT INTO t VALUES ('a; COMMIT', E'\\'; END', 'it''s; ABORT'); UPDATE \"commit; x\" SET y = $1",
			"- | -"},
		{"DollarBodies", "DO $$ BEGIN COMMIT; END $$; DO $f$ BEGIN NULL; END $f$; COMMIT", "- | - | COMMIT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stmts, err := SplitPostgres(tt.sql)
			if err != nil {
				t.Fatalf("SplitPostgres(%q): %v", tt.sql, err)
			}
			if got := kinds(stmts); got != tt.want {
				t.Errorf("SplitPostgres(%q): got %q, want %q", tt.sql, got, tt.want)
			}
		})
	}
}

// Ensure each kind is what SplitPostgres read, not only its name.
func TestSplitPostgres_Kinds(t *testing.T) {
	stmts, err := SplitPostgres("BEGIN; END; ABORT; SAVEPOINT a; RELEASE a; ROLLBACK TRANSACTION TO a; SET a = 1; DISCARD PLANS; VACUUM; SELECT 1")
	if err != nil {
		t.Fatal(err)
	}
	want := []Kind{Begin, Commit, Rollback, Savepoint, Release, RollbackTo, Set, Reset, Vacuum, Other}
	if len(stmts) != len(want) {
		t.Fatalf("got %d statements, want %d", len(stmts), len(want))
	}
	for i, w := range want {
		if stmts[i].Kind != w || stmts[i].Dialect != PostgreSQL {
			t.Errorf("statement %d %q: got kind %d (dialect %d), want %d (PostgreSQL)", i+1, stmts[i].Text, stmts[i].Kind, stmts[i].Dialect, w)
		}
	}
}

func TestSplitPostgres_NotClosed(t *testing.T) {
	for sql, want := range map[string]string{
		"SELECT 'x":             "a ' string is not closed",
		"SELECT E'x\\'":         "a ' string is not closed",
		`SELECT "x`:             `a " identifier is not closed`,
		"SELECT 1 /* a /* b */": "a /* comment is not closed",
		"DO $b$ BEGIN END $c$":  "a $b$ body is not closed",
	} {
		if _, err := SplitPostgres(sql); err == nil || err.Error() != want {
			t.Errorf("SplitPostgres(%q): got %v, want %q", sql, err, want)
		}
	}
}
