package db_test

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sqlworker/worker/internal/schema"
	"github.com/sqlworker/worker/internal/workertest"

	"github.com/sqlworker/worker/fdstat"
	"github.com/sqlworker/worker/internal/db"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func openFDs(tb testing.TB, dbPaths ...string) fdstat.Counts {
	tb.Helper()
	c := fdstat.NewCounter(dbPaths...)
	defer c.Close() // it holds a descriptor of /proc/self/fd until then
	counts, err := c.Count()
	if err != nil {
		tb.Fatal(err)
	}
	return counts
}

// Ensure 10,000 concurrent Init calls open one handle and a bounded pool.
func TestHandle_Init_Concurrent(t *testing.T) {
	const goroutines, calls = 64, 10000
	before := db.Accounting()
	fdsBefore := openFDs(t).Total()

	path := filepath.Join(t.TempDir(), "worker.db")
	h := db.New(db.Config{Path: path, MaxOpenConns: 4})
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		seen  = make(map[*sql.DB]int)
		errs  []error
		next  = make(chan struct{}, calls)
		start = make(chan struct{})
	)
	for range calls {
		next <- struct{}{}
	}
	close(next)
	for range goroutines {
		wg.Go(func() {
			<-start
			for range next {
				d, err := h.Init(context.Background())
				if err == nil {
					// Use the handle, so the pool really opens connections.
					err = d.QueryRowContext(context.Background(), "SELECT 1").Scan(new(int))
				}
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				}
				seen[d]++
				mu.Unlock()
			}
		})
	}
	close(start)
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("Init errors: %d, first: %v", len(errs), errs[0])
	}
	if got, want := len(seen), 1; got != want {
		t.Fatalf("distinct *sql.DB returned: got %d, want %d", got, want)
	}
	opened, reused, failed := h.InitCalls()
	if opened != 1 || failed != 0 || reused != calls-1 {
		t.Fatalf("InitCalls: got opened=%d reused=%d failed=%d, want 1 %d 0", opened, reused, failed, calls-1)
	}
	after := db.Accounting()
	if got, want := after.HandlesOpen()-before.HandlesOpen(), uint64(1); got != want {
		t.Fatalf("handles open: got %d more, want %d", got, want)
	}
	if got, max := after.ConnectionsOpen()-before.ConnectionsOpen(), uint64(h.MaxOpenConns()); got > max {
		t.Fatalf("connections open: got %d, want at most %d", got, max)
	}
	// Each WAL connection holds the database and its -wal; -shm is shared.
	// The handle adds one more FD: the flock on the database file.
	fds := openFDs(t, path)
	if got, max := fds.Get(fdstat.SQLite), 2*h.MaxOpenConns()+2; got > max {
		t.Fatalf("sqlite FDs: got %d, want at most %d (2 × max open + the -shm + the lock)", got, max)
	}
	if got, max := fds.Total()-fdsBefore, 2*h.MaxOpenConns()+2; got > max {
		t.Fatalf("FDs above baseline: got %d, want at most %d (2 × max open + the -shm + the lock)", got, max)
	}

	if err := h.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	final := db.Accounting()
	if got, want := final.HandlesOpen(), before.HandlesOpen(); got != want {
		t.Fatalf("handles open after Close: got %d, want %d", got, want)
	}
	if got, want := final.ConnectionsOpen(), before.ConnectionsOpen(); got != want {
		t.Fatalf("connections open after Close: got %d, want %d", got, want)
	}
}

// Ensure a failed first open is not cached: fixing the cause lets the next
// Init succeed.
func TestHandle_Init_RetryAfterFailure(t *testing.T) {
	t.Run("MissingDirectory", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "data")
		h := db.New(db.Config{Path: filepath.Join(dir, "worker.db")})
		defer h.Close(context.Background())
		_, err := h.Init(context.Background())
		if err == nil || !strings.Contains(err.Error(), dir) {
			t.Fatalf("first Init: got %v, want an error naming %s", err, dir)
		}
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if _, err := h.Init(context.Background()); err != nil {
			t.Fatalf("second Init: got %v, want success", err)
		}
		if opened, _, failed := h.InitCalls(); opened != 1 || failed != 1 {
			t.Fatalf("InitCalls: got opened=%d failed=%d, want 1 1", opened, failed)
		}
	})
	// Permission bits do not stop root, so "unwritable" is made with a
	// regular file where the directory should be.
	t.Run("NotADirectory", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "data")
		if err := os.WriteFile(dir, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		h := db.New(db.Config{Path: filepath.Join(dir, "worker.db")})
		defer h.Close(context.Background())
		_, err := h.Init(context.Background())
		if got, want := err, "is not a directory"; got == nil || !strings.Contains(got.Error(), want) {
			t.Fatalf("first Init: got %v, want an error containing %q", got, want)
		}
		if err := os.Remove(dir); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if _, err := h.Init(context.Background()); err != nil {
			t.Fatalf("second Init: got %v, want success", err)
		}
	})
}

// Ensure Close is idempotent, works on a handle that never opened, leaves no
// -wal behind, and makes later Init calls fail.
func TestHandle_Close(t *testing.T) {
	t.Run("NeverOpened", func(t *testing.T) {
		h := db.New(db.Config{Path: filepath.Join(t.TempDir(), "worker.db")})
		for range 2 {
			if err := h.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
	})
	t.Run("Twice", func(t *testing.T) {
		h := db.New(db.Config{Path: filepath.Join(t.TempDir(), "worker.db")})
		d, err := h.Init(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := d.Exec("CREATE TABLE t (x); INSERT INTO t VALUES (1)"); err != nil {
			t.Fatal(err)
		}
		for range 2 {
			if err := h.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		if fi, err := os.Stat(h.Path() + "-wal"); err == nil && fi.Size() > 0 {
			t.Fatalf("-wal after Close: got %d bytes, want empty or gone", fi.Size())
		}
		if _, err := h.Init(context.Background()); !errors.Is(err, db.ErrClosed) {
			t.Fatalf("Init after Close: got %v, want %v", err, db.ErrClosed)
		}
	})
}

// Ensure a second worker on the same database refuses to start, naming the
// path and the pid that holds it, and can start once the first is gone.
func TestHandle_Lock(t *testing.T) {
	h1 := workertest.MustOpenHandle(t)
	h2 := db.New(db.Config{Path: h1.Path()})
	defer h2.Close(context.Background())
	_, err := h2.Init(context.Background())
	if !errors.Is(err, db.ErrLocked) {
		t.Fatalf("second handle: got %v, want %v", err, db.ErrLocked)
	}
	want := "database is in use by another worker: " + h1.Path() + " is locked (pid " + strconv.Itoa(os.Getpid()) + ")"
	if got := err.Error(); got != want {
		t.Fatalf("error: got %q, want %q", got, want)
	}
	if _, err := os.Stat(h1.Path() + ".lock"); err == nil {
		t.Fatalf("%s.lock: got a lock file, want none (the lock is on the database file)", h1.Path())
	}
	if err := h1.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := h2.Init(context.Background()); err != nil {
		t.Fatalf("after the first closed: got %v, want success", err)
	}
}

// Ensure the settings that keep the worker safe are in force on every
// connection of the pool.
func TestHandle_Pragmas(t *testing.T) {
	h := workertest.MustOpenHandle(t)
	d, _ := h.Init(context.Background())
	ctx := context.Background()
	// Hold several connections at once so that each is checked.
	conns := make([]*sql.Conn, h.MaxOpenConns())
	for i := range conns {
		c, err := d.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns[i] = c
	}
	for i, c := range conns {
		for _, tc := range []struct{ pragma, want string }{
			{"journal_mode", "wal"},
			{"busy_timeout", "5000"},
			{"foreign_keys", "1"},
			{"synchronous", "1"}, // NORMAL
		} {
			var got string
			if err := c.QueryRowContext(ctx, "PRAGMA "+tc.pragma).Scan(&got); err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("conn %d: PRAGMA %s: got %s, want %s", i, tc.pragma, got, tc.want)
			}
		}
	}
	if got, want := d.Stats().MaxOpenConnections, db.DefaultMaxOpenConns; got != want {
		t.Fatalf("MaxOpenConnections: got %d, want %d", got, want)
	}
}

// Ensure migrations bring a new database to the current version, once.
func TestMigrate(t *testing.T) {
	h := workertest.MustOpenHandle(t)
	d, _ := h.Init(context.Background())
	var v int
	if err := d.QueryRow("PRAGMA user_version").Scan(&v); err != nil {
		t.Fatal(err)
	}
	if got, want := v, schema.SQLiteVersion; got != want {
		t.Fatalf("user_version: got %d, want %d", got, want)
	}
	if err := schema.MigrateSQLite(context.Background(), d); err != nil {
		t.Fatalf("second Migrate: %v", err)
	}
	for _, table := range []string{"job_runs", "heartbeat"} {
		var n int
		if err := d.QueryRow("SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = ?", table).Scan(&n); err != nil || n != 1 {
			t.Fatalf("table %s: got %d (%v), want 1", table, n, err)
		}
	}
	if _, err := d.Exec("PRAGMA user_version = 99"); err != nil {
		t.Fatal(err)
	}
	if err := schema.MigrateSQLite(context.Background(), d); err == nil || !strings.Contains(err.Error(), "newer") {
		t.Fatalf("Migrate on a newer schema: got %v, want an error", err)
	}
}

// Ensure a done context still interrupts SQLite through the counting driver:
// a wrapper that hid ExecerContext/QueryerContext would lose this.
func TestDriver_ContextInterrupts(t *testing.T) {
	h := workertest.MustOpenHandle(t)
	d, _ := h.Init(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	const forever = `WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT max(x) FROM c`
	err := d.QueryRowContext(ctx, forever).Scan(new(int64))
	if err == nil {
		t.Fatal("query: got success, want interrupted")
	}
	if ctx.Err() == nil {
		t.Fatalf("query ended before its context: %v", err)
	}
	// The pool must still work afterwards.
	if err := d.QueryRow("SELECT 1").Scan(new(int)); err != nil {
		t.Fatalf("query after interrupt: %v", err)
	}
}

// Ensure the driver counts explicit statements, so a *sql.Stmt that is never
// closed is visible.
func TestDriver_Statements(t *testing.T) {
	h := workertest.MustOpenHandle(t)
	d, _ := h.Init(context.Background())
	before := db.Accounting().StatementsOpen()
	stmt, err := d.Prepare("SELECT ?")
	if err != nil {
		t.Fatal(err)
	}
	if err := stmt.QueryRow(1).Scan(new(int)); err != nil {
		t.Fatal(err)
	}
	if got, want := db.Accounting().StatementsOpen()-before, uint64(1); got != want {
		t.Fatalf("statements open: got %d more, want %d", got, want)
	}
	stmt.Close()
	if got, want := db.Accounting().StatementsOpen(), before; got != want {
		t.Fatalf("statements open after Close: got %d, want %d", got, want)
	}
}

// Ensure Close returns within its timeout when leaked rows pin the pool,
// instead of waiting for ever, so a worker with such a leak still exits.
func TestHandle_Close_LeakedRows(t *testing.T) {
	h := db.New(db.Config{Path: filepath.Join(t.TempDir(), "worker.db"), MaxOpenConns: 1, CloseTimeout: 200 * time.Millisecond})
	d, err := h.Init(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	rows, err := d.QueryContext(context.Background(), "SELECT 1") // never closed before Close
	if err != nil {
		t.Fatal(err)
	}
	err = h.Close(context.Background())
	if !errors.Is(err, db.ErrCloseTimeout) {
		t.Fatalf("Close: got %v, want %v", err, db.ErrCloseTimeout)
	}
	rows.Close() // lets database/sql finish closing, for goleak
}

// Ensure a connection that SQLite answered "readonly" is dropped, not reused:
// it was opened while the file was not writable and would stay read-only.
func TestDriver_DropsReadOnlyConnections(t *testing.T) {
	h := workertest.MustOpenHandle(t)
	d, _ := h.Init(context.Background())
	if _, err := d.Exec("CREATE TABLE t (x)"); err != nil {
		t.Fatal(err)
	}
	ro, err := sql.Open(db.DriverName, "file:"+h.Path()+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	ro.SetMaxOpenConns(1)
	before := db.Accounting()
	_, err = ro.Exec("INSERT INTO t VALUES (1)")
	if err == nil || !strings.Contains(err.Error(), "readonly") {
		t.Fatalf("write on a read-only connection: got %v, want a readonly error", err)
	}
	after := db.Accounting()
	if got, want := after.ConnectionsClosed-before.ConnectionsClosed, uint64(1); got != want {
		t.Fatalf("connections closed: got %d, want %d (the read-only one dropped)", got, want)
	}
	if got := ro.Stats().OpenConnections; got != 0 {
		t.Fatalf("pool: got %d open connections, want 0", got)
	}
	// A read on a read-only connection is fine and keeps it.
	if err := ro.QueryRow("SELECT count(*) FROM t").Scan(new(int)); err != nil {
		t.Fatal(err)
	}
	if got := ro.Stats().OpenConnections; got != 1 {
		t.Fatalf("pool after a read: got %d open connections, want 1", got)
	}
	// A prepared write's answer drops it too (the history's insert is one).
	st, err := ro.Prepare("INSERT INTO t VALUES (2)")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	before = db.Accounting()
	if _, err := st.Exec(); err == nil || !strings.Contains(err.Error(), "readonly") {
		t.Fatalf("prepared write on a read-only connection: got %v, want a readonly error", err)
	}
	if got, want := db.Accounting().ConnectionsClosed-before.ConnectionsClosed, uint64(1); got != want {
		t.Fatalf("connections closed after the prepared write: got %d, want %d", got, want)
	}
}
