package reliability_test

import (
	"database/sql"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sqlworker/worker/internal/workertest"
)

// faultConfig runs the heartbeat and one writing job every second, with a
// short busy timeout. pad is the size of the blob each write adds.
func faultConfig(extra string, pad int) string {
	return fmt.Sprintf(`
database:
  busy_timeout: 500ms
%s
builtin:
  heartbeat: {schedule: "@every 1s", timeout: 5s}
jobs:
  - name: write
    schedule: "* * * * * *"
    timeout: 10s
    sql: |
      CREATE TABLE IF NOT EXISTS ticks (at TEXT, pad BLOB);
      INSERT INTO ticks VALUES (strftime('%%Y-%%m-%%dT%%H:%%M:%%fZ'), zeroblob(%d));
`, extra, pad)
}

// fault is one bad day for the database.
type fault struct {
	inject, clear func(t *testing.T)
	ready         string // what /readyz must say while the fault lasts
	cause         string // what the failed runs' errors must say
}

// failures returns the failed runs of the fault test's jobs.
func failures(w *workertest.Worker, t *testing.T) float64 {
	mfs := w.Scrape(t)
	return runs(mfs, "write", "failure") + runs(mfs, "heartbeat", "failure")
}

// runFault injects f into a running worker and checks that the worker stays
// up, counts and logs every failed run with its cause, reports the fault on
// /readyz, and recovers by itself once the fault is cleared.
func runFault(t *testing.T, w *workertest.Worker, f fault) {
	t.Helper()
	before := failures(w, t)
	f.inject(t)
	injected := time.Now()
	var body string
	detect := w.WaitFor(t, "reporting the fault on /readyz", 30*time.Second, func() bool {
		var code int
		code, body, _ = w.Get("/readyz")
		return code == http.StatusServiceUnavailable && strings.Contains(body, f.ready)
	})
	w.WaitFor(t, "counting failed runs", 30*time.Second, func() bool { return failures(w, t) >= before+3 })
	failed := failures(w, t)
	// Each counted failure is logged, with its cause.
	w.WaitFor(t, "logging every failed run", 5*time.Second, func() bool {
		return float64(strings.Count(w.Logs(), `msg="Job run failed"`)) >= failed
	})
	if !strings.Contains(w.Logs(), f.cause) {
		t.Errorf("log: no failed run names the cause %q", f.cause)
	}
	if code, _, err := w.Get("/healthz"); code != http.StatusOK {
		t.Errorf("GET /healthz during the fault: got %d (%v), want 200", code, err)
	}
	faultFor := time.Since(injected)

	successes := runs(w.Scrape(t), "write", "success")
	f.clear(t)
	recover := w.WaitFor(t, "ready again after the fault cleared", 30*time.Second, func() bool {
		code, _, _ := w.Get("/readyz")
		return code == http.StatusOK
	})
	w.WaitFor(t, "writing again", 30*time.Second, func() bool { return runs(w.Scrape(t), "write", "success") > successes })
	if w.Exited() {
		t.Fatal("worker exited")
	}
	t.Logf("fault reported on /readyz after %s: %q", detect.Round(time.Millisecond), strings.TrimSpace(body))
	t.Logf("%.0f failed runs counted and logged in %s of fault; ready again %s after the fault cleared",
		failed-before, faultFor.Round(time.Second), recover.Round(time.Millisecond))
	if code, _ := w.Stop(t, 60*time.Second); code != 0 {
		t.Errorf("exit code: got %d, want 0", code)
	}
}

// Ensure another process holding the write lock past busy_timeout fails the
// worker's writes with "database is locked", and they resume on release.
func TestFault_LockHeld(t *testing.T) {
	t.Parallel()
	w := StartWorker(t, workertest.Options{Config: faultConfig("", 0)})
	other := workertest.OpenDB(t, w.DBPath, "_txlock=immediate&_busy_timeout=10000")
	var tx *sql.Tx
	runFault(t, w, fault{
		inject: func(t *testing.T) {
			var err error
			if tx, err = other.Begin(); err != nil {
				t.Fatal(err)
			}
			if _, err := tx.Exec("CREATE TABLE IF NOT EXISTS held (x)"); err != nil {
				t.Fatal(err)
			}
		},
		clear: func(t *testing.T) {
			if err := tx.Rollback(); err != nil {
				t.Fatal(err)
			}
		},
		ready: "heartbeat: failure: database is locked",
		cause: "database is locked",
	})
}

// Ensure a full database (the worker's max_page_count reached: another
// process filled the file to it) fails the worker's writes with
// "database or disk is full", and they resume once space is freed.
func TestFault_DatabaseFull(t *testing.T) {
	t.Parallel()
	const maxPages = 300
	w := StartWorker(t, workertest.Options{Config: faultConfig(fmt.Sprintf("  max_page_count: %d", maxPages), 2000)})
	other := workertest.OpenDB(t, w.DBPath, "_busy_timeout=10000")
	runFault(t, w, fault{
		inject: func(t *testing.T) {
			if _, err := other.Exec("CREATE TABLE IF NOT EXISTS ballast (b BLOB)"); err != nil {
				t.Fatal(err)
			}
			for i := 0; ; i++ {
				var pages, free int
				if err := other.QueryRow("SELECT (SELECT page_count FROM pragma_page_count), (SELECT freelist_count FROM pragma_freelist_count)").Scan(&pages, &free); err != nil {
					t.Fatal(err)
				}
				if pages > maxPages+10 && free == 0 {
					return
				}
				if i > 10*maxPages {
					t.Fatalf("cannot fill the database: %d pages, %d free", pages, free)
				}
				if _, err := other.Exec("INSERT INTO ballast VALUES (randomblob(3500))"); err != nil {
					t.Fatal(err)
				}
			}
		},
		clear: func(t *testing.T) {
			if _, err := other.Exec("DELETE FROM ballast"); err != nil {
				t.Fatal(err)
			}
		},
		ready: "database or disk is full",
		cause: "database or disk is full",
	})
}

// fsImmutableFL is FS_IMMUTABLE_FL of linux/fs.h, what chattr +i sets.
const fsImmutableFL = 0x10

// setImmutable sets or clears the immutable attribute of path, as chattr
// does. Unlike permission bits it denies root, and it applies to
// descriptors that are already open.
func setImmutable(path string, on bool) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	attr, err := unix.IoctlGetUint32(int(f.Fd()), unix.FS_IOC_GETFLAGS)
	if err != nil {
		return fmt.Errorf("cannot read the attributes of %s: %w", path, err)
	}
	if on {
		attr |= fsImmutableFL
	} else {
		attr &^= fsImmutableFL
	}
	if err := unix.IoctlSetPointerInt(int(f.Fd()), unix.FS_IOC_SETFLAGS, int(attr)); err != nil {
		return fmt.Errorf("cannot set the attributes of %s (the file system must support chattr +i): %w", path, err)
	}
	return nil
}

// Ensure a database file that becomes read-only (immutable, with its -wal)
// fails the worker's writes with a disk I/O error, and they resume once it
// is writable again.
func TestFault_ReadOnly(t *testing.T) {
	t.Parallel()
	w := StartWorker(t, workertest.Options{Config: faultConfig("", 0)})
	// The -shm stays writable: SQLite maps it, and a write to an immutable
	// mapped page is a SIGBUS that kills the process (measured).
	files := []string{w.DBPath, w.DBPath + "-wal"}
	t.Cleanup(func() {
		for _, f := range files {
			setImmutable(f, false)
		}
	})
	runFault(t, w, fault{
		inject: func(t *testing.T) {
			for _, f := range files {
				if err := setImmutable(f, true); err != nil {
					t.Fatal(err)
				}
			}
			// The attribute really denies root.
			if err := os.WriteFile(w.DBPath, nil, 0o644); err == nil {
				t.Fatal("write to the immutable database: got nil, want an error")
			}
		},
		clear: func(t *testing.T) {
			for _, f := range files {
				if err := setImmutable(f, false); err != nil {
					t.Fatal(err)
				}
			}
		},
		ready: "heartbeat: failure: disk I/O error",
		cause: "disk I/O error",
	})
}

// Ensure the database directory disappearing is reported at once, fails the
// worker's runs naming the directory, and a fresh database is created when
// the directory is back.
func TestFault_DirectoryRemoved(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	w := StartWorker(t, workertest.Options{Config: faultConfig("", 0), DBPath: filepath.Join(dir, "worker.db")})
	runFault(t, w, fault{
		inject: func(t *testing.T) {
			if err := os.RemoveAll(dir); err != nil {
				t.Fatal(err)
			}
		},
		clear: func(t *testing.T) {
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
		},
		ready: "database: database file was removed or replaced while open",
		cause: dir + ": no such file or directory",
	})
	d := workertest.OpenDB(t, w.DBPath, "mode=ro")
	var n int
	if err := d.QueryRow("SELECT count(*) FROM job_runs WHERE result = 'success'").Scan(&n); err != nil || n < 1 {
		t.Fatalf("successful runs recorded in the new database: got %d (%v), want ≥ 1", n, err)
	}
}

// Ensure a database file replaced under the running worker (an operator
// restoring a backup with a rename) is picked up: the worker drops the old
// handle, opens the new file, migrates it, writes to it, and never replays
// the old file's -wal over it.
func TestFault_FileReplaced(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	w := StartWorker(t, workertest.Options{Config: faultConfig("", 0), DBPath: filepath.Join(dir, "worker.db")})
	w.WaitFor(t, "writing", 30*time.Second, func() bool { return runs(w.Scrape(t), "write", "success") >= 2 })

	// The replacement: a database of its own, with a row the old file lacks.
	replacement := filepath.Join(dir, "restored.db")
	r, err := sql.Open("sqlite3", "file:"+replacement)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Exec("CREATE TABLE restored (note TEXT); INSERT INTO restored VALUES ('from the backup')"); err != nil {
		t.Fatal(err)
	}
	r.Close()
	if err := os.Rename(replacement, w.DBPath); err != nil {
		t.Fatal(err)
	}
	replaced := time.Now()

	opened := func() float64 {
		return workertest.Sum(w.Scrape(t)["worker_db_init_calls_total"], map[string]string{"result": "opened"})
	}
	took := w.WaitFor(t, "reopening the new file", 30*time.Second, func() bool { return opened() >= 2 })
	w.WaitFor(t, "ready", 30*time.Second, func() bool { return w.Status("/readyz") == http.StatusOK })
	d := workertest.OpenDB(t, w.DBPath, "mode=ro")
	w.WaitFor(t, "writing to the new file", 30*time.Second, func() bool {
		var n int
		err := d.QueryRow("SELECT count(*) FROM job_runs WHERE job = 'write' AND result = 'success'").Scan(&n)
		return err == nil && n >= 1
	})
	var note string
	if err := d.QueryRow("SELECT note FROM restored").Scan(&note); err != nil || note != "from the backup" {
		t.Fatalf("the restored row: got %q (%v), want %q", note, err, "from the backup")
	}
	if got := integrityCheck(t, d); got != "ok" {
		t.Fatalf("integrity_check of the new file: got %q, want ok", got)
	}
	if code, _ := w.Stop(t, 60*time.Second); code != 0 {
		t.Errorf("exit code: got %d, want 0", code)
	}
	t.Logf("replaced file reopened %s after the rename (%s since); its own row kept, jobs write to it",
		took.Round(time.Millisecond), time.Since(replaced).Round(time.Millisecond))
}
