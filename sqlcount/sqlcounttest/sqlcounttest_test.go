package sqlcounttest_test

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/mattn/go-sqlite3"

	"github.com/sqlworker/worker/sqlcount"
	"github.com/sqlworker/worker/sqlcount/sqlcounttest"
)

func TestMain(m *testing.M) {
	sqlcounttest.VerifyTestMain(m) // the package's own tests leave nothing open
}

// recorder is a TestingT that keeps what the test would fail with.
type recorder struct{ errs []string }

func (r *recorder) Error(args ...any) { r.errs = append(r.errs, fmt.Sprint(args...)) }

// perf408 is PERF-408's initDb with the line of its sql.Open.
type perf408 struct {
	dsn     string
	line    int
	handles []*sql.DB
}

func (p *perf408) initDb() error {
	_, _, line, _ := runtime.Caller(0)
	db, err := sql.Open("sqlite3-app", p.dsn) // line+1
	if err != nil {
		return err
	}
	p.line = line + 1
	p.handles = append(p.handles, db)
	return db.Ping()
}

func (p *perf408) close() {
	for _, db := range p.handles {
		db.Close()
	}
}

func testDSN(t *testing.T) string { return "file:" + filepath.Join(t.TempDir(), "app.db") }

// Ensure VerifyIdempotent fails on PERF-408's initDb with the function's
// name and file:line, and passes its sync.Once fix.
func TestVerifyIdempotent(t *testing.T) {
	p := &perf408{dsn: testDSN(t)}
	defer p.close()
	var r recorder
	sqlcounttest.VerifyIdempotent(&r, 20, p.initDb)
	if len(r.errs) != 1 {
		t.Fatalf("errors: got %d, want 1: %q", len(r.errs), r.errs)
	}
	for _, want := range []string{
		"20 calls opened 20 handles, want at most 1 (20 still open)",
		"20 handles open from github.com/sqlworker/worker/sqlcount/sqlcounttest_test.(*perf408).initDb (",
		fmt.Sprintf("sqlcounttest_test.go:%d), the oldest for ", p.line),
	} {
		if !strings.Contains(r.errs[0], want) {
			t.Errorf("error: got %q, want it to contain %q", r.errs[0], want)
		}
	}

	var once sync.Once
	fixed := func() error {
		var err error
		once.Do(func() { err = p.initDb() })
		return err
	}
	r = recorder{}
	sqlcounttest.VerifyIdempotent(&r, 20, fixed)
	if len(r.errs) != 0 {
		t.Errorf("sync.Once fix: got %q, want no error", r.errs)
	}
}

// Ensure VerifyNone fails on a statement left open, where the Counter
// records statements, naming its site; passes once it is closed; and
// ignores what IgnoreCurrent saw and what IgnoreOrigin names.
func TestVerifyNone(t *testing.T) {
	var c sqlcount.Counter
	c.SetOrigins(sqlcount.Handles, sqlcount.Connections, sqlcount.Statements)
	db := sql.OpenDB(sqlcount.NewConnector(connector{dsn: testDSN(t)}, &c))
	defer db.Close()
	if err := db.Ping(); err != nil {
		t.Fatal(err)
	}
	current := sqlcounttest.IgnoreCurrent()
	_, _, line, _ := runtime.Caller(0)
	st, err := db.Prepare("SELECT 1") // line+1
	if err != nil {
		t.Fatal(err)
	}
	var r recorder
	sqlcounttest.VerifyNone(&r, current, sqlcounttest.MaxWait(0))
	want := fmt.Sprintf("found 1 unexpected open object\n1 statement open from github.com/sqlworker/worker/sqlcount/sqlcounttest_test.TestVerifyNone (%s:%d)", thisFile(), line+1)
	if len(r.errs) != 1 || !strings.HasPrefix(r.errs[0], "sqlcounttest: "+want) {
		t.Errorf("statement open: got %q, want one error starting %q", r.errs, want)
	}

	r = recorder{}
	sqlcounttest.VerifyNone(&r, current, sqlcounttest.IgnoreOrigin("github.com/sqlworker/worker/sqlcount/sqlcounttest_test.TestVerifyNone"))
	if len(r.errs) != 0 {
		t.Errorf("IgnoreOrigin: got %q, want no error", r.errs)
	}

	st.Close()
	r = recorder{}
	sqlcounttest.VerifyNone(&r, current)
	if len(r.errs) != 0 {
		t.Errorf("statement closed: got %q, want no error", r.errs)
	}
}

func thisFile() string {
	_, file, _, _ := runtime.Caller(0)
	return file
}

// connector is a driver.Connector of go-sqlite3, which has none of its own.
type connector struct{ dsn string }

func (c connector) Connect(context.Context) (driver.Conn, error) {
	return (&sqlite3.SQLiteDriver{}).Open(c.dsn)
}

func (connector) Driver() driver.Driver { return &sqlite3.SQLiteDriver{} }
