package sqlcount_test

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/sqlworker/worker/internal/pgtest"
	"github.com/sqlworker/worker/sqlcount"
)

// pgConfig starts a PostgreSQL server for t and returns its pgx config.
func pgConfig(t testing.TB) *pgx.ConnConfig {
	cfg, err := pgx.ParseConfig(pgtest.Start(t))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// backends returns the client backends of the server other than the one of
// observer, from pg_stat_activity; with query, only those running it.
func backends(t *testing.T, observer *pgx.Conn, query string) int {
	t.Helper()
	var n int
	err := observer.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
		WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
		AND ($1 = '' OR (state = 'active' AND query = $1))`, query).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// waitBackends waits until backends reports want: a backend leaves
// pg_stat_activity a moment after its client closed the connection.
func waitBackends(t *testing.T, observer *pgx.Conn, query string, want int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := backends(t, observer, query)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("backends running %q: got %v, want %v", query, got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func testOptionalInterfacesPostgreSQL(t *testing.T) {
	cfg := pgConfig(t)
	var c sqlcount.Counter
	want := []string{"Pinger", "ExecerContext", "QueryerContext", "ConnPrepareContext", "ConnBeginTx", "SessionResetter", "NamedValueChecker"}
	testOptionalInterfaces(t, stdlib.GetConnector(*cfg), sqlcount.NewConnector(stdlib.GetConnector(*cfg), &c), "SELECT $1::int", want)
}

func testCountsPostgreSQL(t *testing.T) {
	cfg := pgConfig(t)
	var c sqlcount.Counter
	ctx := context.Background()
	db := sql.OpenDB(sqlcount.NewConnector(stdlib.GetConnector(*cfg), &c))
	stmt, err := db.PrepareContext(ctx, "SELECT $1::int")
	if err != nil {
		t.Fatal(err)
	}
	// pgx's own types pass as arguments: NamedValueChecker is forwarded.
	var got int
	if err := stmt.QueryRowContext(ctx, pgxInt{7}).Scan(&got); err != nil || got != 7 {
		t.Fatalf("query with a pgx-typed argument: got %v, %v, want 7", got, err)
	}
	if got, want := c.Counts(), (sqlcount.Counts{HandlesOpened: 1, ConnectionsOpened: 1, StatementsPrepared: 1}); got != want {
		t.Errorf("counts while open: got %+v, want %+v", got, want)
	}
	stmt.Close()
	db.Close()
	if got, want := c.Counts(), (sqlcount.Counts{HandlesOpened: 1, HandlesClosed: 1, ConnectionsOpened: 1, ConnectionsClosed: 1, StatementsPrepared: 1, StatementsClosed: 1}); got != want {
		t.Errorf("counts after close: got %+v, want %+v", got, want)
	}
}

// pgxInt is an argument type that only a driver with CheckNamedValue takes:
// database/sql's default converter refuses a struct.
type pgxInt struct{ v int32 }

// Int64Value implements pgtype.Int64Valuer, which pgx encodes.
func (i pgxInt) Int64Value() (pgtype.Int8, error) {
	return pgtype.Int8{Int64: int64(i.v), Valid: true}, nil
}

// pgObserver returns a connection of its own, uncounted, that watches the
// server's pg_stat_activity.
func pgObserver(t *testing.T, cfg *pgx.ConnConfig) *pgx.Conn {
	t.Helper()
	observer, err := pgx.ConnectConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { observer.Close(context.Background()) })
	return observer
}

func testPERF408PostgreSQL(t *testing.T) {
	cfg := pgConfig(t)
	observer := pgObserver(t, cfg)
	var c sqlcount.Counter
	leak := &perf408{counter: &c, open: func() *sql.DB {
		return sql.OpenDB(sqlcount.NewConnector(stdlib.GetConnector(*cfg), &c))
	}}
	leak.run(t, 10, func(i int) {
		// The server sees the same: a backend per leaked handle. Its
		// connection is open when Ping returns.
		if got, want := backends(t, observer, ""), i; got != want {
			t.Fatalf("call %d: backends in pg_stat_activity: got %v, want %v", i, got, want)
		}
	})
	waitBackends(t, observer, "", 0)
}

func testContextCancelPostgreSQL(t *testing.T) {
	cfg := pgConfig(t)
	ctx := context.Background()
	observer := pgObserver(t, cfg)
	var c sqlcount.Counter
	db := sql.OpenDB(sqlcount.NewConnector(stdlib.GetConnector(*cfg), &c))
	defer db.Close()
	const long = "SELECT pg_sleep(600)"
	qctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	err := db.QueryRowContext(qctx, long).Scan(new(string))
	if err == nil {
		t.Fatal("got no error, want the query interrupted")
	}
	if qctx.Err() == nil {
		t.Fatalf("got %v before the deadline, want the query interrupted by it", err)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("got %v, want %v", err, context.DeadlineExceeded)
	}
	// And the server stopped running it.
	waitBackends(t, observer, long, 0)
	if err := db.QueryRowContext(ctx, "SELECT 1").Scan(new(int)); err != nil {
		t.Errorf("query after the interrupt: %v", err)
	}
}

func benchPointSelectPostgreSQL(b *testing.B, wrap func(driver.Connector) driver.Connector) {
	cfg := pgConfig(b)
	db := sql.OpenDB(wrap(stdlib.GetConnector(*cfg)))
	defer db.Close()
	db.SetMaxOpenConns(1)
	benchPointSelect(b, db, "INSERT INTO t (id, v) VALUES ($1, $2)", "SELECT v FROM t WHERE id = $1")
}
