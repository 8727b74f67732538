package sqlcount_test

import (
	"context"
	"database/sql"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/mattn/go-sqlite3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"

	"github.com/sqlworker/worker/sqlcount"
)

// counter counts every handle the examples open through sqlite3-example.
var counter sqlcount.Counter

func init() {
	// The wrapped driver under a name of its own: sql.Open("sqlite3") still
	// opens go-sqlite3 uncounted.
	sql.Register("sqlite3-example", sqlcount.NewDriver(&sqlite3.SQLiteDriver{}, &counter))
}

// tempDB returns the path of a database file in a new temporary directory.
func tempDB() string {
	dir, err := os.MkdirTemp("", "sqlcount-example-")
	if err != nil {
		log.Fatal(err)
	}
	return filepath.Join(dir, "app.db")
}

// Wrap go-sqlite3 and register it under a name of its own; every handle
// that sql.Open opens with that name is counted, with its connections.
func ExampleNewDriver() {
	before := counter.Counts()
	path := tempDB()
	defer os.RemoveAll(filepath.Dir(path))
	db, err := sql.Open("sqlite3-example", "file:"+path)
	if err != nil {
		log.Fatal(err)
	}
	if err := db.Ping(); err != nil {
		log.Fatal(err)
	}
	n := counter.Counts()
	fmt.Println("handles open:", n.HandlesOpen()-before.HandlesOpen())
	fmt.Println("connections open:", n.ConnectionsOpen()-before.ConnectionsOpen())

	db.Close()
	n = counter.Counts()
	fmt.Println("after Close:", n.HandlesOpen()-before.HandlesOpen(), n.ConnectionsOpen()-before.ConnectionsOpen())
	// Output:
	// handles open: 1
	// connections open: 1
	// after Close: 0 0
}

// Wrap pgx's connector (not a pgxpool one). The handle counts as open from
// sql.OpenDB, before any connection: this example needs no server.
func ExampleNewConnector() {
	cfg, err := pgx.ParseConfig("postgres://app@localhost:5432/app?sslmode=disable")
	if err != nil {
		log.Fatal(err)
	}
	var c sqlcount.Counter
	db := sql.OpenDB(sqlcount.NewConnector(stdlib.GetConnector(*cfg), &c))
	fmt.Println("handles open:", c.Counts().HandlesOpen())
	db.Close()
	fmt.Println("after Close:", c.Counts().HandlesOpen())
	// Output:
	// handles open: 1
	// after Close: 0
}

// Export the counts to Prometheus; the namespace and constant labels are
// options.
func ExampleNewCollector() {
	var c sqlcount.Counter
	sql.Register("sqlite3-orders", sqlcount.NewDriver(&sqlite3.SQLiteDriver{}, &c))
	path := tempDB()
	defer os.RemoveAll(filepath.Dir(path))
	db, err := sql.Open("sqlite3-orders", "file:"+path)
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	if err := db.Ping(); err != nil {
		log.Fatal(err)
	}

	collector := sqlcount.NewCollector(&c, sqlcount.WithNamespace("app"), sqlcount.WithConstLabels(prometheus.Labels{"db": "orders"}))
	reg := prometheus.NewRegistry()
	reg.MustRegister(collector)

	out, err := testutil.CollectAndFormat(collector, expfmt.TypeTextPlain, "app_db_handles_open", "app_db_connections_open")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Print(string(out))
	// Output:
	// # HELP app_db_connections_open Driver connections open, across all handles of the process.
	// # TYPE app_db_connections_open gauge
	// app_db_connections_open{db="orders"} 1
	// # HELP app_db_handles_open sql.DB handles open on the counting driver, across the whole process.
	// # TYPE app_db_handles_open gauge
	// app_db_handles_open{db="orders"} 1
}

// leaked is where PERF-408's init keeps its handles, for ever.
var leaked []*sql.DB

// initDB is the PERF-408 bug: a new handle per call, kept in a global
// slice and never closed.
func initDB(ctx context.Context, path string) (*sql.DB, error) {
	db, err := sql.Open("sqlite3-example", "file:"+path)
	if err != nil {
		return nil, err
	}
	leaked = append(leaked, db)
	return db, db.PingContext(ctx)
}

// The counts catch a handle opened per call: nothing else in the program
// knows about those handles, but the driver sees each one.
func Example_perf408() {
	before := counter.Counts()
	path := tempDB()
	defer os.RemoveAll(filepath.Dir(path))
	for range 3 {
		if _, err := initDB(context.Background(), path); err != nil {
			log.Fatal(err)
		}
		n := counter.Counts()
		fmt.Println("handles open:", n.HandlesOpen()-before.HandlesOpen(), "connections open:", n.ConnectionsOpen()-before.ConnectionsOpen())
	}
	for _, db := range leaked {
		db.Close()
	}
	// Output:
	// handles open: 1 connections open: 1
	// handles open: 2 connections open: 2
	// handles open: 3 connections open: 3
}

// Origins names the function that opened the handles and connections still
// open: PERF-408's initDB, once per call. The same stacks are the pprof
// profiles sqlcount.handles and sqlcount.conns.
func ExampleCounter_Origins() {
	path := tempDB()
	defer os.RemoveAll(filepath.Dir(path))
	for range 3 {
		if _, err := initDB(context.Background(), path); err != nil {
			log.Fatal(err)
		}
	}
	for _, o := range counter.Origins() {
		// The function without its package path, which differs from one
		// module to another; o.Line is the line of the call.
		fmt.Printf("%d × %v from %s (%s)\n", o.Count, o.Kind, o.Function[strings.LastIndex(o.Function, ".")+1:], filepath.Base(o.File))
	}
	for _, db := range leaked {
		db.Close()
	}
	leaked = nil
	fmt.Println("after Close:", len(counter.Origins()))
	// Output:
	// 3 × handle from initDB (example_test.go)
	// 3 × connection from initDB (example_test.go)
	// after Close: 0
}
