package db_test

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mattn/go-sqlite3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sqlworker/worker/internal/db"
	"github.com/sqlworker/worker/internal/dbmetrics"
	"github.com/sqlworker/worker/internal/schema"
	"github.com/sqlworker/worker/internal/workertest"
)

// Ensure a handle whose file is still at its path passes Verify and keeps
// its *sql.DB.
func TestHandle_Verify_Unchanged(t *testing.T) {
	h := workertest.MustOpenHandle(t)
	d1, _ := h.Init(context.Background())
	if err := h.Health(); err != nil {
		t.Fatalf("Health: got %v, want nil", err)
	}
	if err := h.Verify(); err != nil {
		t.Fatalf("Verify: got %v, want nil", err)
	}
	d2, err := h.Init(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if d1 != d2 {
		t.Fatal("Init after Verify: got another *sql.DB, want the same")
	}
}

// Ensure a removed database directory is noticed, the handle dropped, Init
// fails naming the directory while it is gone, and the next Init after it is
// back opens a fresh, migrated database: one handle open throughout.
func TestHandle_Verify_DirectoryRemoved(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	before := db.Accounting().HandlesOpen()
	h := db.New(db.Config{Path: filepath.Join(dir, "worker.db")})
	defer h.Close(ctx)
	d, err := h.Init(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Exec("CREATE TABLE t (x); INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	// SQLite does not notice: the write goes to the unlinked file.
	if _, err := d.Exec("INSERT INTO t VALUES (2)"); err != nil {
		t.Fatalf("write to the unlinked file: got %v, want success (this is why Verify exists)", err)
	}
	if err := h.Health(); !errors.Is(err, db.ErrFileChanged) {
		t.Fatalf("Health: got %v, want %v", err, db.ErrFileChanged)
	}
	if err := h.Verify(); !errors.Is(err, db.ErrFileChanged) {
		t.Fatalf("Verify: got %v, want %v", err, db.ErrFileChanged)
	}
	if _, err := d.Exec("INSERT INTO t VALUES (3)"); err == nil || !strings.Contains(err.Error(), "database is closed") {
		t.Fatalf("write through the dropped *sql.DB: got %v, want sql: database is closed", err)
	}
	if got, want := db.Accounting().HandlesOpen(), before; got != want {
		t.Fatalf("handles open after the drop: got %d, want %d", got, want)
	}
	_, err = h.Init(ctx)
	if err == nil || !strings.Contains(err.Error(), dir+": no such file or directory") {
		t.Fatalf("Init without the directory: got %v, want an error naming %s", err, dir)
	}
	if err := h.Health(); !errors.Is(err, db.ErrNotOpen) || !strings.Contains(err.Error(), dir) {
		t.Fatalf("Health while the directory is gone: got %v, want %v naming %s", err, db.ErrNotOpen, dir)
	}

	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	d, err = h.Init(ctx)
	if err != nil {
		t.Fatalf("Init after the directory is back: got %v, want success", err)
	}
	var version int
	if err := d.QueryRow("PRAGMA user_version").Scan(&version); err != nil || version != schema.SQLiteVersion {
		t.Fatalf("user_version of the new database: got %d (%v), want %d", version, err, schema.SQLiteVersion)
	}
	if err := h.Health(); err != nil {
		t.Fatalf("Health after reopening: got %v, want nil", err)
	}
	if got, want := db.Accounting().HandlesOpen(), before+1; got != want {
		t.Fatalf("handles open after reopening: got %d, want %d", got, want)
	}
	if opened, _, failed := h.InitCalls(); opened != 2 || failed != 1 {
		t.Fatalf("InitCalls: got opened=%d failed=%d, want 2 1", opened, failed)
	}
	if h2 := db.New(db.Config{Path: h.Path()}); true {
		if _, err := h2.Init(ctx); !errors.Is(err, db.ErrLocked) {
			t.Fatalf("second handle after reopening: got %v, want %v (the new file is locked)", err, db.ErrLocked)
		}
		h2.Close(ctx)
	}
}

// Ensure a database file replaced under the handle (a restore by rename) is
// noticed, the old -wal is not replayed over the new file, and the new file
// is opened only once no connection to the old one is in use.
func TestHandle_Verify_FileReplaced(t *testing.T) {
	ctx := context.Background()
	h := workertest.MustOpenHandle(t)
	d, err := h.Init(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Frames in the -wal that a checkpoint has not copied yet.
	if _, err := d.Exec("CREATE TABLE old (x); INSERT INTO old VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	restored := filepath.Join(filepath.Dir(h.Path()), "restored.db")
	o, err := sql.Open("sqlite3", restored)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := o.Exec("CREATE TABLE restored (x); INSERT INTO restored VALUES (42)"); err != nil {
		t.Fatal(err)
	}
	o.Close()
	// A run holds a connection of the old handle across the swap.
	held, err := d.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(restored, h.Path()); err != nil {
		t.Fatal(err)
	}
	if err := h.Verify(); !errors.Is(err, db.ErrFileChanged) || !strings.Contains(err.Error(), "another file") {
		t.Fatalf("Verify: got %v, want %v saying another file", err, db.ErrFileChanged)
	}
	if _, err := h.Init(ctx); err == nil || !strings.Contains(err.Error(), "still in use") {
		t.Fatalf("Init while an old connection is held: got %v, want an error saying still in use", err)
	}
	held.Close()
	d, err = h.Init(ctx)
	if err != nil {
		t.Fatalf("Init once the old connection is closed: %v", err)
	}
	var x int
	if err := d.QueryRow("SELECT x FROM restored").Scan(&x); err != nil || x != 42 {
		t.Fatalf("row of the restored file: got %d (%v), want 42", x, err)
	}
	var check string
	if err := d.QueryRow("PRAGMA integrity_check").Scan(&check); err != nil || check != "ok" {
		t.Fatalf("integrity_check of the restored file: got %q (%v), want ok", check, err)
	}
}

// Ensure max_page_count holds on every connection of the pool, a write past
// it fails with SQLITE_FULL, and freeing pages lets writes succeed again.
func TestHandle_MaxPageCount(t *testing.T) {
	ctx := context.Background()
	const maxPages = 64
	h := db.New(db.Config{Path: filepath.Join(t.TempDir(), "worker.db"), MaxOpenConns: 3, MaxPageCount: maxPages})
	defer h.Close(ctx)
	d, err := h.Init(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var conns []*sql.Conn
	for range 3 {
		c, err := d.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		var got int
		if err := c.QueryRowContext(ctx, "PRAGMA max_page_count").Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != maxPages {
			t.Errorf("max_page_count on connection %d: got %d, want %d", len(conns), got, maxPages)
		}
	}
	for _, c := range conns {
		c.Close()
	}
	if _, err := d.Exec("CREATE TABLE fill (b BLOB)"); err != nil {
		t.Fatal(err)
	}
	var full error
	for i := 0; i < maxPages && full == nil; i++ {
		_, full = d.Exec("INSERT INTO fill VALUES (randomblob(4000))")
	}
	var se sqlite3.Error
	if !errors.As(full, &se) || se.Code != sqlite3.ErrFull {
		t.Fatalf("insert past max_page_count: got %v, want SQLITE_FULL", full)
	}
	if !db.IsStorageError(full) {
		t.Errorf("IsStorageError(%v): got false, want true", full)
	}
	for _, err := range []error{sqlite3.Error{Code: sqlite3.ErrBusy}, sqlite3.Error{Code: sqlite3.ErrConstraint}, errors.New("x"), nil} {
		if db.IsStorageError(err) {
			t.Errorf("IsStorageError(%v): got true, want false", err)
		}
	}
	if _, err := d.Exec("DELETE FROM fill"); err != nil {
		t.Fatalf("delete in a full database: %v", err)
	}
	if _, err := d.Exec("INSERT INTO fill VALUES (randomblob(4000))"); err != nil {
		t.Fatalf("insert after freeing pages: got %v, want success", err)
	}
}

// Ensure go_sql_* keep client_golang's names, help and label, read the
// handle open at scrape time, and are 0 while none is open.
func TestDBStatsCollector(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	h := db.New(db.Config{Path: filepath.Join(dir, "worker.db"), MaxOpenConns: 4})
	defer h.Close(ctx)
	d, err := h.Init(ctx)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(dbmetrics.NewDBStatsCollector(h, "main"))
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Fatalf("lint: %v %v", problems, err)
	}
	if got, want := testutil.CollectAndCount(dbmetrics.NewDBStatsCollector(h, "main")), 9; got != want {
		t.Fatalf("series: got %d, want %d", got, want)
	}
	if err := d.Ping(); err != nil {
		t.Fatal(err)
	}
	if got := value(t, reg, "go_sql_open_connections", "db_name", "main"); got < 1 {
		t.Fatalf("go_sql_open_connections: got %v, want ≥ 1", got)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := h.Verify(); !errors.Is(err, db.ErrFileChanged) {
		t.Fatal(err)
	}
	if got := value(t, reg, "go_sql_open_connections", "db_name", "main"); got != 0 {
		t.Fatalf("go_sql_open_connections with no handle: got %v, want 0", got)
	}
	if got := value(t, reg, "go_sql_max_open_connections", "db_name", "main"); got != 4 {
		t.Fatalf("go_sql_max_open_connections with no handle: got %v, want 4", got)
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Init(ctx); err != nil {
		t.Fatal(err)
	}
	if got := value(t, reg, "go_sql_open_connections", "db_name", "main"); got < 1 {
		t.Fatalf("go_sql_open_connections after reopening: got %v, want ≥ 1", got)
	}
}
