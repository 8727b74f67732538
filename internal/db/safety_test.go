package db_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"github.com/sqlworker/worker/internal/db"
	"github.com/sqlworker/worker/internal/dbmetrics"
	"github.com/sqlworker/worker/internal/schema"
	"github.com/sqlworker/worker/internal/workertest"
)

// Ensure the lock belongs to the database file, not to its name: a symlink,
// a hard link and a path through ".." to an open database are refused with
// ErrLocked, naming the path given and the pid holding the lock.
func TestHandle_Lock_Alias(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	if err := os.Mkdir(filepath.Join(root, "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(root, "data", "worker.db")
	h1 := db.New(db.Config{Path: path})
	defer h1.Close(ctx)
	if _, err := h1.Init(ctx); err != nil {
		t.Fatal(err)
	}
	symlink, hardlink := filepath.Join(root, "link.db"), filepath.Join(root, "hard.db")
	if err := os.Symlink(path, symlink); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(path, hardlink); err != nil {
		t.Fatal(err)
	}
	for _, alias := range []string{symlink, hardlink, filepath.Join(root, "data", "..", "data", "worker.db")} {
		h2 := db.New(db.Config{Path: alias})
		_, err := h2.Init(ctx)
		if !errors.Is(err, db.ErrLocked) {
			t.Errorf("Init on %s: got %v, want %v", alias, err, db.ErrLocked)
		} else if got, want := err.Error(), "database is in use by another worker: "+alias+" is locked (pid "+strconv.Itoa(os.Getpid())+")"; got != want {
			t.Errorf("error: got %q, want %q", got, want)
		}
		if err := h2.Close(ctx); err != nil {
			t.Errorf("Close of the refused handle: got %v, want nil", err)
		}
	}
}

// Ensure the flock outlives the connections: after a Close that timed out
// on leaked rows, the database stays locked until the last connection is
// closed (closing the lock's descriptor earlier would drop SQLite's fcntl
// locks of the connection still open), and is free right after.
func TestHandle_Lock_HeldUntilLastConnection(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "worker.db")
	h := db.New(db.Config{Path: path, MaxOpenConns: 1, CloseTimeout: 100 * time.Millisecond})
	d, err := h.Init(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := d.QueryContext(ctx, "SELECT 1")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Close(ctx); !errors.Is(err, db.ErrCloseTimeout) {
		t.Fatalf("Close: got %v, want %v", err, db.ErrCloseTimeout)
	}
	h2 := db.New(db.Config{Path: path})
	defer h2.Close(ctx)
	if _, err := h2.Init(ctx); !errors.Is(err, db.ErrLocked) {
		t.Fatalf("Init while a connection of the closed handle is open: got %v, want %v", err, db.ErrLocked)
	}
	rows.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := h2.Init(ctx)
		if err == nil {
			break
		}
		if !errors.Is(err, db.ErrLocked) || time.Now().After(deadline) {
			t.Fatalf("Init after the last connection closed: got %v, want success", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Ensure a file the handle refuses is not changed at all: bytes and
// directory are the same after Init as before.
func TestHandle_Init_RefusedUnchanged(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name, sql string // sql makes the file; "" writes text instead
		want      string
	}{
		{"OtherJobRuns", "CREATE TABLE job_runs (id INTEGER PRIMARY KEY, name TEXT)", "table job_runs has columns (id, name), want (id, job, scheduled_at, started_at, ended_at, result, error, rows_affected, attempt, jitter_ms)"},
		{"OtherIndex", "CREATE TABLE t (x); CREATE INDEX job_runs_ended ON t (x)", "index job_runs_ended is on t (x), want job_runs (ended_at)"},
		{"NewerVersion", "CREATE TABLE t (x); PRAGMA user_version = 7", fmt.Sprintf("schema version 7 is newer than this worker's %d", schema.SQLiteVersion)},
		{"WALModeNewerVersion", "PRAGMA journal_mode = WAL; CREATE TABLE t (x); PRAGMA user_version = 7", fmt.Sprintf("schema version 7 is newer than this worker's %d", schema.SQLiteVersion)},
		{"NotSQLite", "", "not an SQLite database"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "app.db")
			if tc.sql == "" {
				if err := os.WriteFile(path, bytes.Repeat([]byte("not a database\n"), 100), 0o644); err != nil {
					t.Fatal(err)
				}
			} else {
				o, err := sql.Open("sqlite3", path)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := o.Exec(tc.sql); err != nil {
					t.Fatal(err)
				}
				o.Close()
			}
			before, namesBefore := workertest.FileAndDir(t, path)
			h := db.New(db.Config{Path: path})
			_, err := h.Init(ctx)
			if err == nil || !strings.HasPrefix(err.Error(), "cannot open database "+path+": ") || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("Init: got %v, want one line naming %s and saying %q", err, path, tc.want)
			}
			if err := h.Close(ctx); err != nil {
				t.Fatal(err)
			}
			after, namesAfter := workertest.FileAndDir(t, path)
			if !bytes.Equal(before, after) {
				t.Errorf("bytes of the refused file: changed (%d bytes before, %d after)", len(before), len(after))
			}
			if namesAfter != namesBefore {
				t.Errorf("directory: got %q, want %q", namesAfter, namesBefore)
			}
		})
	}
	t.Run("NotRegular", func(t *testing.T) {
		dir := t.TempDir()
		fifo := filepath.Join(dir, "worker.db")
		if err := unix.Mkfifo(fifo, 0o644); err != nil {
			t.Fatal(err)
		}
		for path, kind := range map[string]string{fifo: "named pipe", dir: "directory"} {
			h := db.New(db.Config{Path: path})
			_, err := h.Init(ctx)
			if got, want := errString(err), "cannot open database "+path+": not a regular file ("+kind+")"; got != want {
				t.Errorf("Init: got %q, want %q", got, want)
			}
			h.Close(ctx)
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 1 {
			t.Errorf("directory: got %d entries, want only the FIFO", len(entries))
		}
	})
}

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

// objects returns the names of the worker's tables and indexes in d.
func objects(t *testing.T, d *sql.DB) string {
	t.Helper()
	var s sql.NullString
	if err := d.QueryRow(`SELECT group_concat(name, ' ') FROM (SELECT name FROM sqlite_schema
		WHERE name IN ('job_runs', 'job_runs_job_started', 'job_runs_ended', 'heartbeat') ORDER BY name)`).Scan(&s); err != nil {
		t.Fatal(err)
	}
	return s.String
}

const allObjects = "heartbeat job_runs job_runs_ended job_runs_job_started"

// Ensure a dropped table or index of the worker's schema is created again
// by Verify, at run time, and by Init, at start, keeping the other rows; and
// that a table of the worker's name with its columns changed is refused.
func TestHandle_Verify_DroppedTables(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "worker.db")
	h := db.New(db.Config{Path: path})
	d, err := h.Init(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Exec(`INSERT INTO heartbeat VALUES (1, 1, 'h', 'v', 'now', 'now'); DROP TABLE job_runs`); err != nil {
		t.Fatal(err)
	}
	if err := h.Verify(); err != nil {
		t.Fatalf("Verify: got %v, want nil", err)
	}
	if got := objects(t, d); got != allObjects {
		t.Fatalf("after Verify: got %q, want %q", got, allObjects)
	}
	if _, err := d.Exec(`DROP INDEX job_runs_ended`); err != nil {
		t.Fatal(err)
	}
	if err := h.Close(ctx); err != nil {
		t.Fatal(err)
	}

	h = db.New(db.Config{Path: path})
	d, err = h.Init(ctx)
	if err != nil {
		t.Fatalf("Init with an index dropped: got %v, want success", err)
	}
	if got := objects(t, d); got != allObjects {
		t.Fatalf("after Init: got %q, want %q", got, allObjects)
	}
	var n int
	if err := d.QueryRow("SELECT count(*) FROM heartbeat").Scan(&n); err != nil || n != 1 {
		t.Fatalf("heartbeat rows kept: got %d (%v), want 1", n, err)
	}
	// A column added by an operator is tolerated; one changed is not.
	if _, err := d.Exec(`ALTER TABLE job_runs ADD COLUMN note TEXT`); err != nil {
		t.Fatal(err)
	}
	if err := h.Close(ctx); err != nil {
		t.Fatal(err)
	}
	h = db.New(db.Config{Path: path})
	d, err = h.Init(ctx)
	if err != nil {
		t.Fatalf("Init with a column added: got %v, want success", err)
	}
	if _, err := d.Exec(`DROP TABLE heartbeat; CREATE TABLE heartbeat (id INTEGER PRIMARY KEY, beat TEXT)`); err != nil {
		t.Fatal(err)
	}
	if err := h.Close(ctx); err != nil {
		t.Fatal(err)
	}
	h = db.New(db.Config{Path: path})
	defer h.Close(ctx)
	_, err = h.Init(ctx)
	if want := "table heartbeat has columns (id, beat), want (id, pid, hostname, version, started_at, beat_at)"; err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Init with heartbeat of another shape: got %v, want an error saying %q", err, want)
	}
}

// Ensure a removed -wal is noticed while connections have it open: Health
// says so, no new connection is made (it would start a second -wal), Verify
// checkpoints the removed -wal through an open connection and drops the
// handle, and the next Init opens a database that has every committed row;
// under CheckpointExternal too, the one case where that mode checkpoints.
func TestHandle_Verify_WALRemoved(t *testing.T) {
	for name, mode := range map[string]string{"Worker": db.CheckpointWorker, "External": db.CheckpointExternal} {
		t.Run(name, func(t *testing.T) { testVerifyWALRemoved(t, mode) })
	}
}

func testVerifyWALRemoved(t *testing.T, mode string) {
	ctx := context.Background()
	h := workertest.MustOpenHandleWith(t, db.Config{Checkpoint: mode})
	d, err := h.Init(ctx)
	if err != nil {
		t.Fatal(err)
	}
	const rows = 500
	if _, err := d.Exec(`CREATE TABLE t (x BLOB);
		WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 500) INSERT INTO t SELECT randomblob(1000) FROM n`); err != nil {
		t.Fatal(err)
	}
	held, err := d.Conn(ctx) // the one open connection, in use
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(h.Path() + "-wal"); err != nil {
		t.Fatal(err)
	}
	if err := h.Health(); !errors.Is(err, db.ErrWALChanged) {
		t.Fatalf("Health: got %v, want %v", err, db.ErrWALChanged)
	}
	// A second connection would be a new one: refused.
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	_, err = d.Conn(cctx)
	cancel()
	if !errors.Is(err, db.ErrWALChanged) {
		t.Fatalf("new connection: got %v, want %v", err, db.ErrWALChanged)
	}
	if _, err := os.Stat(h.Path() + "-wal"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("-wal after the refused connection: got %v, want none (no second -wal)", err)
	}
	// The held connection still reads and writes the removed -wal.
	if _, err := held.ExecContext(ctx, "INSERT INTO t VALUES (x'01')"); err != nil {
		t.Fatal(err)
	}
	held.Close()
	if err := h.Verify(); !errors.Is(err, db.ErrWALChanged) {
		t.Fatalf("Verify: got %v, want %v", err, db.ErrWALChanged)
	}
	d, err = h.Init(ctx)
	if err != nil {
		t.Fatalf("Init after the drop: got %v, want success", err)
	}
	var n int
	if err := d.QueryRow("SELECT count(*) FROM t").Scan(&n); err != nil || n != rows+1 {
		t.Fatalf("rows after the reopen: got %d (%v), want %d", n, err, rows+1)
	}
	var check string
	if err := d.QueryRow("PRAGMA integrity_check").Scan(&check); err != nil || check != "ok" {
		t.Fatalf("integrity_check: got %q (%v), want ok", check, err)
	}
	if err := h.Health(); err != nil {
		t.Fatalf("Health after the reopen: got %v, want nil", err)
	}
	if opened, _, _ := h.InitCalls(); opened != 2 {
		t.Fatalf("InitCalls opened: got %d, want 2", opened)
	}
}

// fileID returns the device and inode of path.
func fileID(t *testing.T, path string) [2]uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return [2]uint64{st.Dev, st.Ino}
}

// Ensure a -shm replaced by another file is noticed, like a removed -wal,
// and that file is left at its path.
func TestHandle_Verify_SHMReplaced(t *testing.T) {
	ctx := context.Background()
	h := workertest.MustOpenHandle(t)
	d, _ := h.Init(ctx)
	if _, err := d.Exec("CREATE TABLE t (x); INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	other := h.Path() + ".other"
	if err := os.WriteFile(other, make([]byte, 32768), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(other, h.Path()+"-shm"); err != nil {
		t.Fatal(err)
	}
	if err := h.Health(); !errors.Is(err, db.ErrWALChanged) || !strings.Contains(err.Error(), "-shm is another file now") {
		t.Fatalf("Health: got %v, want %v saying -shm is another file now", err, db.ErrWALChanged)
	}
	foreign := fileID(t, h.Path()+"-shm")
	if err := h.Verify(); !errors.Is(err, db.ErrWALChanged) {
		t.Fatalf("Verify: got %v, want %v", err, db.ErrWALChanged)
	}
	// The dropped handle's last connection did not unlink the file that is
	// not its own.
	if got := fileID(t, h.Path()+"-shm"); got != foreign {
		t.Fatalf("-shm after the drop: got inode %v, want the other file's %v, kept", got, foreign)
	}
	d, err := h.Init(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var x int
	if err := d.QueryRow("SELECT x FROM t").Scan(&x); err != nil || x != 1 {
		t.Fatalf("row after the reopen: got %d (%v), want 1", x, err)
	}
}

// Ensure a database SQLite reports malformed is a fault that stays: Health
// and Init return ErrCorrupt naming the path, worker_db_corrupt is 1, and
// Close returns ErrCorrupt (the worker exits 1), once.
func TestHandle_Corrupt(t *testing.T) {
	// However SQLite reads the overwritten page, the answer is noted:
	// through the connection's Exec, a prepared statement (the history's
	// insert) and a query's rows, which SQLite steps in Next (the last
	// page overwritten: the first rows read fine).
	for _, tc := range []struct {
		name     string
		lastPage bool // overwrite the file's last page, not the table's root
		read     func(d *sql.DB) error
	}{
		{"Exec", false, func(d *sql.DB) error {
			_, err := d.Exec("INSERT INTO victim SELECT x FROM victim LIMIT 1")
			return err
		}},
		{"PreparedExec", false, func(d *sql.DB) error {
			st, err := d.Prepare("INSERT INTO victim SELECT x FROM victim LIMIT 1")
			if err != nil {
				return err
			}
			defer st.Close()
			_, err = st.Exec()
			return err
		}},
		{"RowsNext", true, func(d *sql.DB) error {
			rows, err := d.Query("SELECT length(x) FROM victim")
			if err != nil {
				return fmt.Errorf("the query itself failed, not a row: %w", err)
			}
			defer rows.Close()
			for rows.Next() {
			}
			return rows.Err()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) { testHandleCorrupt(t, tc.lastPage, tc.read) })
	}
}

// testHandleCorrupt overwrites a table's root page, or the file's last
// page, one of the table's leaves, of a new database under an open handle,
// reads it with read and checks that the handle reports the corruption.
func testHandleCorrupt(t *testing.T, lastPage bool, read func(d *sql.DB) error) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "worker.db")
	h := db.New(db.Config{Path: path, MaxOpenConns: 1})
	d, err := h.Init(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Exec(`CREATE TABLE victim (x BLOB);
		WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100) INSERT INTO victim SELECT randomblob(3000) FROM n;
		PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
		t.Fatal(err)
	}
	var root int64
	if err := d.QueryRow("SELECT rootpage FROM sqlite_schema WHERE name = 'victim'").Scan(&root); err != nil {
		t.Fatal(err)
	}
	page := root
	if lastPage {
		if err := d.QueryRow("PRAGMA page_count").Scan(&page); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(bytes.Repeat([]byte{0xff}, 4096), (page-1)*4096); err != nil {
		t.Fatal(err)
	}
	f.Close()
	// A write by another connection makes the handle's drop its page cache.
	o, err := sql.Open("sqlite3", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := o.Exec("CREATE TABLE poke (x)"); err != nil {
		t.Fatal(err)
	}
	o.Close()
	if err := read(d); !db.IsCorrupt(err) {
		t.Fatalf("read of the overwritten page: got %v, want SQLITE_CORRUPT", err)
	}
	wantMsg := "database is corrupt: " + path + ": database disk image is malformed"
	if err := h.Health(); !errors.Is(err, db.ErrCorrupt) || err.Error() != wantMsg {
		t.Fatalf("Health: got %v, want %q", err, wantMsg)
	}
	if _, err := h.Init(ctx); !errors.Is(err, db.ErrCorrupt) {
		t.Fatalf("Init: got %v, want %v", err, db.ErrCorrupt)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(dbmetrics.NewCollector("worker", h))
	if got := value(t, reg, "worker_db_corrupt"); got != 1 {
		t.Fatalf("worker_db_corrupt: got %v, want 1", got)
	}
	if err := h.Close(ctx); !errors.Is(err, db.ErrCorrupt) {
		t.Fatalf("Close: got %v, want %v", err, db.ErrCorrupt)
	}
	if err := h.Close(ctx); err != nil {
		t.Fatalf("second Close: got %v, want nil", err)
	}
}

// Ensure Init's fast path stays one atomic load and add, without
// allocating, with the corruption and -wal checks in place.
func TestHandle_Init_NoAllocs(t *testing.T) {
	h := workertest.MustOpenHandle(t)
	ctx := context.Background()
	if got := testing.AllocsPerRun(1000, func() { _, _ = h.Init(ctx) }); got != 0 {
		t.Fatalf("allocs per Init: got %v, want 0", got)
	}
}

// Ensure a connection refused because the -wal was removed starts the
// recovery by itself, without waiting for a heartbeat's Verify.
func TestHandle_Connect_WALRemovedRecovers(t *testing.T) {
	ctx := context.Background()
	h := workertest.MustOpenHandle(t)
	d, _ := h.Init(ctx)
	if _, err := d.Exec("CREATE TABLE t (x); INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	held, err := d.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(h.Path() + "-wal"); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Conn(ctx); !errors.Is(err, db.ErrWALChanged) {
		t.Fatalf("new connection: got %v, want %v", err, db.ErrWALChanged)
	}
	held.Close() // what the recovery's checkpoint waits for
	deadline := time.Now().Add(10 * time.Second)
	for err := h.Health(); !errors.Is(err, db.ErrNotOpen); err = h.Health() {
		if time.Now().After(deadline) {
			t.Fatalf("Health: got %v, want %v (the handle dropped) within 10 s", err, db.ErrNotOpen)
		}
		time.Sleep(5 * time.Millisecond)
	}
	d, err = h.Init(ctx)
	if err != nil {
		t.Fatalf("Init after the recovery: %v", err)
	}
	var x int
	if err := d.QueryRow("SELECT x FROM t").Scan(&x); err != nil || x != 1 {
		t.Fatalf("row after the recovery: got %d (%v), want 1", x, err)
	}
}
