package sqlcounttest_test

import (
	"database/sql"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/mattn/go-sqlite3"

	"github.com/sqlworker/worker/sqlcount"
	"github.com/sqlworker/worker/sqlcount/sqlcounttest"
)

// The program's driver: go-sqlite3, counted, under a name of its own.
var counter sqlcount.Counter

func init() {
	sql.Register("sqlite3-app", sqlcount.NewDriver(&sqlite3.SQLiteDriver{}, &counter))
}

var dbPath = func() string {
	dir, err := os.MkdirTemp("", "sqlcounttest-example-")
	if err != nil {
		log.Fatal(err)
	}
	return filepath.Join(dir, "app.db")
}()

// handles is PERF-408's global array of connections.
var handles []*sql.DB

// initDb is PERF-408's: it opens a new handle on every call and keeps it.
func initDb() (*sql.DB, error) {
	db, err := sql.Open("sqlite3-app", "file:"+dbPath)
	if err != nil {
		return nil, err
	}
	handles = append(handles, db)
	return db, db.Ping()
}

var (
	once   sync.Once
	shared *sql.DB
	errDb  error
)

// initDbOnce is the fix: it opens the handle once and returns it after.
func initDbOnce() (*sql.DB, error) {
	once.Do(func() {
		shared, errDb = sql.Open("sqlite3-app", "file:"+dbPath)
		if errDb == nil {
			errDb = shared.Ping()
		}
	})
	return shared, errDb
}

// printOrigins prints where e's objects were opened: the function's name
// and file, without the package path and line, which differ from one
// module to another.
func printOrigins(err error) {
	var e *sqlcounttest.Error
	if !errors.As(err, &e) {
		fmt.Println("error:", err)
		return
	}
	fmt.Println(e.Summary)
	for _, o := range e.Origins {
		fmt.Printf("%d × %v from %s (%s)\n", o.Count, o.Kind, o.Function[strings.LastIndex(o.Function, ".")+1:], filepath.Base(o.File))
	}
}

// FindRepeated catches an init that opens a handle per call, and names it;
// the sync.Once fix passes. In a test, VerifyIdempotent(t, 50, ...) fails
// the test with the same message, which has each site's file:line and
// stack.
func ExampleFindRepeated() {
	err := sqlcounttest.FindRepeated(50, func() error { _, err := initDb(); return err })
	printOrigins(err)
	fmt.Println("names initDb with its file and line:", strings.Contains(err.Error(), ".initDb (") && strings.Contains(err.Error(), "example_test.go:"))
	for _, db := range handles {
		db.Close()
	}

	err = sqlcounttest.FindRepeated(50, func() error { _, err := initDbOnce(); return err })
	fmt.Println("with sync.Once:", err)
	shared.Close()
	// Output:
	// 50 calls opened 50 handles, want at most 1 (50 still open)
	// 50 × handle from initDb (example_test.go)
	// names initDb with its file and line: true
	// with sync.Once: <nil>
}

// report is a TestingT that prints what a test would fail with.
type report struct{}

func (report) Error(args ...any) { printOrigins(args[0].(error)) }

// forgotten is the handle forgetToClose leaves open, for the example to
// close after.
var forgotten *sql.DB

// forgetToClose opens a handle for a query and never closes it.
func forgetToClose() error {
	db, err := sql.Open("sqlite3-app", "file:"+dbPath)
	if err != nil {
		return err
	}
	forgotten = db
	var one int
	return db.QueryRow("SELECT 1").Scan(&one)
}

// VerifyNone, deferred with IgnoreCurrent at the start of a test, fails it
// when it leaves a handle, a connection or a statement open, and names the
// site that opened each.
func ExampleVerifyNone() {
	t := report{} // a *testing.T in a test
	func() {
		defer sqlcounttest.VerifyNone(t, sqlcounttest.IgnoreCurrent(), sqlcounttest.MaxWait(10*time.Millisecond))
		if err := forgetToClose(); err != nil {
			log.Fatal(err)
		}
	}()
	forgotten.Close()
	// Output:
	// found 2 unexpected open objects
	// 1 × handle from forgetToClose (example_test.go)
	// 1 × connection from forgetToClose (example_test.go)
}
