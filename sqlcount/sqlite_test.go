package sqlcount_test

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/mattn/go-sqlite3"

	"github.com/sqlworker/worker/sqlcount"
)

// sqliteConnector is a driver.Connector of go-sqlite3, which has none of
// its own.
type sqliteConnector struct{ dsn string }

func (c sqliteConnector) Connect(context.Context) (driver.Conn, error) {
	return (&sqlite3.SQLiteDriver{}).Open(c.dsn)
}
func (c sqliteConnector) Driver() driver.Driver { return &sqlite3.SQLiteDriver{} }

func sqliteDSN(t testing.TB) string {
	return "file:" + filepath.Join(t.TempDir(), "test.db") + "?_journal_mode=WAL&_busy_timeout=5000"
}

// Ensure a wrapped go-sqlite3 connection and statement implement exactly
// the optional interfaces of go-sqlite3's, through NewConnector and through
// NewDriver.
func TestConnector_OptionalInterfaces(t *testing.T) {
	want := []string{"Pinger", "ExecerContext", "QueryerContext", "ConnPrepareContext", "ConnBeginTx", "Execer", "Queryer"}
	t.Run("SQLite", func(t *testing.T) {
		var c sqlcount.Counter
		base := sqliteConnector{dsn: sqliteDSN(t)}
		testOptionalInterfaces(t, base, sqlcount.NewConnector(base, &c), "SELECT ?", want)
	})
	t.Run("SQLiteDriver", func(t *testing.T) {
		var c sqlcount.Counter
		dsn := sqliteDSN(t)
		wrapped, err := sqlcount.NewDriver(&sqlite3.SQLiteDriver{}, &c).(driver.DriverContext).OpenConnector(dsn)
		if err != nil {
			t.Fatal(err)
		}
		testOptionalInterfaces(t, sqliteConnector{dsn: dsn}, wrapped, "SELECT ?", want)
	})
	t.Run("PostgreSQL", testOptionalInterfacesPostgreSQL)
}

// Ensure the counts follow handles, connections and statements opened and
// closed, and that the Collector exports them under the worker's names.
func TestConnector_Counts(t *testing.T) {
	t.Run("SQLite", testCountsSQLite)
	t.Run("PostgreSQL", testCountsPostgreSQL)
}

func testCountsSQLite(t *testing.T) {
	var c sqlcount.Counter
	ctx := context.Background()
	db := sql.OpenDB(sqlcount.NewConnector(sqliteConnector{dsn: sqliteDSN(t)}, &c))
	if err := db.PingContext(ctx); err != nil {
		t.Fatal(err)
	}
	stmt, err := db.PrepareContext(ctx, "SELECT ?")
	if err != nil {
		t.Fatal(err)
	}
	if err := stmt.QueryRowContext(ctx, 1).Scan(new(int)); err != nil {
		t.Fatal(err)
	}
	if got, want := c.Counts(), (sqlcount.Counts{HandlesOpened: 1, ConnectionsOpened: 1, StatementsPrepared: 1}); got != want {
		t.Errorf("counts while open: got %+v, want %+v", got, want)
	}
	compareCounts(t, &c, `# HELP worker_db_connections_closed_total Driver connections closed, across all handles of the process.
# TYPE worker_db_connections_closed_total counter
worker_db_connections_closed_total 0
# HELP worker_db_connections_open Driver connections open, across all handles of the process.
# TYPE worker_db_connections_open gauge
worker_db_connections_open 1
# HELP worker_db_connections_opened_total Driver connections opened, across all handles of the process.
# TYPE worker_db_connections_opened_total counter
worker_db_connections_opened_total 1
# HELP worker_db_handles_closed_total sql.DB handles closed on the counting driver.
# TYPE worker_db_handles_closed_total counter
worker_db_handles_closed_total 0
# HELP worker_db_handles_open sql.DB handles open on the counting driver, across the whole process.
# TYPE worker_db_handles_open gauge
worker_db_handles_open 1
# HELP worker_db_handles_opened_total sql.DB handles opened on the counting driver.
# TYPE worker_db_handles_opened_total counter
worker_db_handles_opened_total 1
# HELP worker_db_statements_open Prepared statements open on the driver, across all handles of the process.
# TYPE worker_db_statements_open gauge
worker_db_statements_open 1
`, nil)
	stmt.Close()
	db.Close()
	if got, want := c.Counts(), (sqlcount.Counts{HandlesOpened: 1, HandlesClosed: 1, ConnectionsOpened: 1, ConnectionsClosed: 1, StatementsPrepared: 1, StatementsClosed: 1}); got != want {
		t.Errorf("counts after close: got %+v, want %+v", got, want)
	}
	compareCounts(t, &c, `# HELP app_db_handles_open sql.DB handles open on the counting driver, across the whole process.
# TYPE app_db_handles_open gauge
app_db_handles_open{db="orders"} 0
`, []sqlcount.Option{sqlcount.WithNamespace("app"), sqlcount.WithConstLabels(map[string]string{"db": "orders"})}, "app_db_handles_open")
}

// Ensure sql.Open of a driver wrapped with NewDriver counts the handle at
// sql.Open and its close at (*sql.DB).Close, and that two wrappers with
// their own Counters count apart.
func TestDriver_Counts(t *testing.T) {
	var a, b sqlcount.Counter
	sql.Register("sqlite3-sqlcount-a", sqlcount.NewDriver(&sqlite3.SQLiteDriver{}, &a))
	sql.Register("sqlite3-sqlcount-b", sqlcount.NewDriver(&sqlite3.SQLiteDriver{}, &b))
	da, err := sql.Open("sqlite3-sqlcount-a", sqliteDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := da.Ping(); err != nil {
		t.Fatal(err)
	}
	if got, want := a.Counts(), (sqlcount.Counts{HandlesOpened: 1, ConnectionsOpened: 1}); got != want {
		t.Errorf("a: got %+v, want %+v", got, want)
	}
	if got, want := b.Counts(), (sqlcount.Counts{}); got != want {
		t.Errorf("b: got %+v, want %+v", got, want)
	}
	da.Close()
	if got, want := a.Counts(), (sqlcount.Counts{HandlesOpened: 1, HandlesClosed: 1, ConnectionsOpened: 1, ConnectionsClosed: 1}); got != want {
		t.Errorf("a after Close: got %+v, want %+v", got, want)
	}
}

// Ensure the PERF-408 leak, a handle opened per call and kept, shows in the
// counts: handles and connections open rise by one per call.
func TestConnector_PERF408(t *testing.T) {
	t.Run("SQLite", func(t *testing.T) {
		var c sqlcount.Counter
		dsn := sqliteDSN(t)
		leak := &perf408{counter: &c, open: func() *sql.DB {
			return sql.OpenDB(sqlcount.NewConnector(sqliteConnector{dsn: dsn}, &c))
		}}
		leak.run(t, 10, nil)
	})
	t.Run("PostgreSQL", testPERF408PostgreSQL)
}

// longSQLite is a query that runs for minutes unless interrupted.
const longSQLite = `WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r) SELECT count(*) FROM r`

// Ensure a context deadline still interrupts a long query through the
// wrapper: the query would otherwise run for minutes, past the test's
// timeout.
func TestConnector_ContextCancel(t *testing.T) {
	t.Run("SQLite", func(t *testing.T) {
		var c sqlcount.Counter
		db := sql.OpenDB(sqlcount.NewConnector(sqliteConnector{dsn: sqliteDSN(t)}, &c))
		defer db.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		err := db.QueryRowContext(ctx, longSQLite).Scan(new(int64))
		if err == nil {
			t.Fatal("got no error, want the query interrupted")
		}
		if ctx.Err() == nil {
			t.Fatalf("got %v before the deadline, want the query interrupted by it", err)
		}
		var se sqlite3.Error
		interrupted := errors.As(err, &se) && se.Code == sqlite3.ErrInterrupt
		if !errors.Is(err, context.DeadlineExceeded) && !interrupted {
			t.Errorf("got %v, want an interrupt or %v", err, context.DeadlineExceeded)
		}
		// The connection is usable afterwards.
		if err := db.QueryRowContext(context.Background(), "SELECT 1").Scan(new(int)); err != nil {
			t.Errorf("query after the interrupt: %v", err)
		}
	})
	t.Run("PostgreSQL", testContextCancelPostgreSQL)
}

// BenchmarkPointSelect compares a point select by primary key through the
// wrapper with the same through the driver alone, go-sqlite3's and pgx's.
func BenchmarkPointSelect(b *testing.B) {
	for _, bc := range []struct {
		name string
		wrap func(driver.Connector) driver.Connector
	}{
		{"SQLite/Raw", func(c driver.Connector) driver.Connector { return c }},
		{"SQLite/Wrapped", func(c driver.Connector) driver.Connector { return sqlcount.NewConnector(c, new(sqlcount.Counter)) }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			db := sql.OpenDB(bc.wrap(sqliteConnector{dsn: sqliteDSN(b)}))
			defer db.Close()
			db.SetMaxOpenConns(1)
			benchPointSelect(b, db, "INSERT INTO t (id, v) VALUES (?, ?)", "SELECT v FROM t WHERE id = ?")
		})
	}
	b.Run("PostgreSQL/Raw", func(b *testing.B) {
		benchPointSelectPostgreSQL(b, func(c driver.Connector) driver.Connector { return c })
	})
	b.Run("PostgreSQL/Wrapped", func(b *testing.B) {
		benchPointSelectPostgreSQL(b, func(c driver.Connector) driver.Connector { return sqlcount.NewConnector(c, new(sqlcount.Counter)) })
	})
}

func benchPointSelect(b *testing.B, db *sql.DB, insert, query string) {
	ctx := context.Background()
	if _, err := db.ExecContext(ctx, "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)"); err != nil {
		b.Fatal(err)
	}
	const rows = 1000
	for i := range rows {
		if _, err := db.ExecContext(ctx, insert, i, fmt.Sprint("v", i)); err != nil {
			b.Fatal(err)
		}
	}
	var v string
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if err := db.QueryRowContext(ctx, query, i%rows).Scan(&v); err != nil {
			b.Fatal(err)
		}
	}
}
