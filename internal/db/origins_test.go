package db_test

import (
	"database/sql"
	"path/filepath"
	"runtime/pprof"
	"testing"

	"github.com/sqlworker/worker/internal/db"
	"github.com/sqlworker/worker/sqlcount"
)

// Ensure RecordStatementOrigins puts each statement prepared through the
// counting driver into the sqlcount.stmts profile while it is open.
func TestRecordStatementOrigins(t *testing.T) {
	prof := pprof.Lookup(sqlcount.Statements.ProfileName())
	if prof == nil {
		t.Fatalf("no %s profile registered", sqlcount.Statements.ProfileName())
	}
	db.RecordStatementOrigins()
	d, err := sql.Open(db.DriverName, "file:"+filepath.Join(t.TempDir(), "stmts.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	before := prof.Count()
	stmt, err := d.Prepare("SELECT 1")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := prof.Count(), before+1; got != want {
		t.Errorf("%s holds %d statements with the statement open, want %d", prof.Name(), got, want)
	}
	if err := stmt.Close(); err != nil {
		t.Fatal(err)
	}
	if got := prof.Count(); got != before {
		t.Errorf("%s holds %d statements after Close, want %d", prof.Name(), got, before)
	}
}
