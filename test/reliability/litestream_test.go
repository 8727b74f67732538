package reliability_test

import (
	"bytes"
	"database/sql"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sqlworker/worker/internal/workertest"
)

// litestreamConfig is a worker for Litestream: database.checkpoint:
// external (wal_checkpoint is off by default then), the heartbeat and a
// writing job every second, and the other built-ins on their defaults.
const litestreamConfig = `
database:
  checkpoint: external
builtin:
  heartbeat: {schedule: "@every 1s", timeout: 5s}
jobs:
  - name: write
    schedule: "* * * * * *"
    timeout: 10s
    sql: |
      CREATE TABLE IF NOT EXISTS ticks (at TEXT, pad BLOB);
      INSERT INTO ticks VALUES (strftime('%Y-%m-%dT%H:%M:%fZ'), randomblob(8000));
`

// walState is what a checkpoint changes: the -wal's header (its checkpoint
// sequence and salts, new whenever a RESTART or TRUNCATE checkpoint resets
// the -wal), its size (0 after a TRUNCATE) and the database file's size
// (which grows as any checkpoint copies pages into it).
type walState struct {
	header          []byte
	walSize, dbSize int64
}

func readWALState(t *testing.T, path string) (walState, bool) {
	t.Helper()
	b, err := os.ReadFile(path + "-wal")
	if err != nil || len(b) < 32 {
		return walState{}, false
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return walState{header: b[:32], walSize: int64(len(b)), dbSize: fi.Size()}, true
}

// Ensure that under database.checkpoint: external the worker never
// checkpoints over a run that writes every second and ends with SIGTERM:
// the -wal keeps its header and only grows, the database file is never
// written, and after the exit the -wal still holds every frame, which a
// reader sees (every counted write is a row, integrity_check ok). This is
// what Litestream needs: a checkpoint it did not run makes it lose its
// place in the WAL.
func TestLitestream_NoCheckpoint(t *testing.T) {
	t.Parallel()
	w := StartWorker(t, workertest.Options{Config: litestreamConfig})
	var first walState
	w.WaitFor(t, "a first write in the -wal", 30*time.Second, func() bool {
		var ok bool
		first, ok = readWALState(t, w.DBPath)
		return ok && runs(w.Scrape(t), "write", "success") >= 1
	})
	last := first
	var polls int
	w.WaitFor(t, "20 writes", 60*time.Second, func() bool {
		now, ok := readWALState(t, w.DBPath)
		polls++
		switch {
		case !ok:
			t.Fatalf("-wal gone or shorter than its header while the worker runs")
		case !bytes.Equal(now.header, first.header):
			t.Fatalf("-wal header: got %x, want %x (a checkpoint reset the -wal)", now.header, first.header)
		case now.walSize < last.walSize:
			t.Fatalf("-wal size: got %d, want at least %d (a checkpoint truncated it)", now.walSize, last.walSize)
		case now.dbSize != first.dbSize:
			t.Fatalf("database file size: got %d, want %d (a checkpoint copied pages into it)", now.dbSize, first.dbSize)
		}
		last = now
		return runs(w.Scrape(t), "write", "success") >= 20
	})
	mfs := w.Scrape(t)
	if code, _ := w.Stop(t, 60*time.Second); code != 0 {
		t.Fatalf("exit code: got %d, want 0\n%s", code, w.Logs())
	}

	after, ok := readWALState(t, w.DBPath)
	switch {
	case !ok:
		t.Fatalf("-wal after exit: gone or empty, want it kept with its frames")
	case !bytes.Equal(after.header, first.header):
		t.Fatalf("-wal header after exit: got %x, want %x", after.header, first.header)
	case after.walSize < last.walSize:
		t.Fatalf("-wal size after exit: got %d, want at least %d", after.walSize, last.walSize)
	case after.dbSize != first.dbSize:
		t.Fatalf("database file size after exit: got %d, want %d (no checkpoint at shutdown)", after.dbSize, first.dbSize)
	}
	d := workertest.OpenDB(t, w.DBPath, "mode=ro")
	var ticks, rows int
	if err := d.QueryRow("SELECT count(*) FROM ticks").Scan(&ticks); err != nil {
		t.Fatal(err)
	}
	if err := d.QueryRow("SELECT count(*) FROM job_runs WHERE job = 'write' AND result = 'success'").Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if counted := runs(mfs, "write", "success"); float64(ticks) < counted || float64(rows) < counted {
		t.Fatalf("after exit, read from the -wal: got %d ticks and %d job_runs rows, want at least %v each (counted before SIGTERM)", ticks, rows, counted)
	}
	if got := integrityCheck(t, d); got != "ok" {
		t.Fatalf("integrity_check: got %q, want ok", got)
	}
	t.Logf("%d polls; -wal %d → %d bytes with header %x throughout; database file %d bytes throughout; %d writes read back after exit",
		polls, first.walSize, after.walSize, first.header[:24], first.dbSize, ticks)
}

// litestreamVersion is the Litestream the replication test installs, as a
// Go module through the module proxy.
const litestreamVersion = "v0.5.18"

// installLitestream installs Litestream into a temporary directory and
// returns the binary's path.
func installLitestream(t *testing.T) string {
	t.Helper()
	bin := t.TempDir()
	cmd := exec.Command("go", "install", "github.com/benbjohnson/litestream/cmd/litestream@"+litestreamVersion)
	cmd.Dir = bin // outside this module
	cmd.Env = append(os.Environ(), "GOBIN="+bin, "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go install litestream@%s: %v\n%s", litestreamVersion, err, out)
	}
	return filepath.Join(bin, "litestream")
}

// Ensure the worker runs under Litestream as the README says: Litestream
// started first replicates the worker's database to a file replica while
// jobs write, the worker stops on SIGTERM, and the restored copy passes
// integrity_check and holds every run the worker finished, row for row; and
// Litestream logged no snapshot forced by a checkpoint it did not run ("wal
// truncated by another process", "salt reset", "checkpoint detected").
func TestLitestream_ReplicateRestore(t *testing.T) {
	t.Parallel()
	litestream := installLitestream(t)
	dir := t.TempDir()
	dbPath, replica := filepath.Join(dir, "worker.db"), "file://"+filepath.Join(dir, "replica")
	ls := workertest.StartProcess(t, "litestream", nil, litestream, "replicate", "-log-level", "debug", dbPath, replica)
	w := StartWorker(t, workertest.Options{Config: litestreamConfig, DBPath: dbPath})
	w.WaitFor(t, "10 writes", 60*time.Second, func() bool { return runs(w.Scrape(t), "write", "success") >= 10 })
	if code, _ := w.Stop(t, 60*time.Second); code != 0 {
		t.Fatalf("worker exit code: got %d, want 0\n%s", code, w.Logs())
	}
	src := workertest.OpenDB(t, dbPath, "mode=ro")
	var want, wantTicks int
	if err := src.QueryRow("SELECT count(*) FROM job_runs").Scan(&want); err != nil {
		t.Fatal(err)
	}
	if err := src.QueryRow("SELECT count(*) FROM ticks").Scan(&wantTicks); err != nil {
		t.Fatal(err)
	}

	// Litestream syncs every second: restore until the copy has caught up.
	var got, gotTicks int
	var restored string
	var attempts int
	caughtUp := func() bool {
		attempts++
		restored = filepath.Join(t.TempDir(), "restored.db")
		out, err := exec.Command(litestream, "restore", "-o", restored, replica).CombinedOutput()
		if err != nil {
			t.Logf("restore: %v: %s", err, bytes.TrimSpace(out))
			return false
		}
		d := workertest.OpenDB(t, restored, "mode=ro")
		if err := d.QueryRow("SELECT count(*) FROM job_runs").Scan(&got); err != nil {
			return false
		}
		if err := d.QueryRow("SELECT count(*) FROM ticks").Scan(&gotTicks); err != nil {
			return false
		}
		return got == want && gotTicks == wantTicks
	}
	for deadline := time.Now().Add(60 * time.Second); !caughtUp(); {
		if time.Now().After(deadline) {
			t.Fatalf("restored copy after 60 s: got %d job_runs rows and %d writes, want %d and %d\n%s", got, gotTicks, want, wantTicks, ls.Logs())
		}
		time.Sleep(200 * time.Millisecond) // polling a condition
	}
	d := workertest.OpenDB(t, restored, "mode=ro")
	if got := integrityCheck(t, d); got != "ok" {
		t.Fatalf("restored integrity_check: got %q, want ok", got)
	}
	if got, want := runKeys(t, d), runKeys(t, src); got != want {
		t.Fatalf("restored job_runs:\n got %s\nwant %s (the source's)", got, want)
	}
	if code, _ := ls.Stop(t, 30*time.Second); code != 0 {
		t.Errorf("litestream exit code: got %d, want 0", code)
	}
	logs := ls.Logs()
	for _, bad := range []string{"another process", "salt reset", "checkpoint detected"} {
		if strings.Contains(logs, bad) {
			t.Errorf("litestream log: got %q, want none (a checkpoint it did not run)\n%s", bad, logs)
		}
	}
	t.Logf("Litestream %s: %d job_runs rows and %d writes restored after %d restores; integrity_check ok", litestreamVersion, got, gotTicks, attempts)
}

// runKeys returns every job_runs row's job, started_at and result, in order.
func runKeys(t *testing.T, d *sql.DB) string {
	t.Helper()
	rows, err := d.Query("SELECT job || '/' || started_at || '/' || result FROM job_runs ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var keys []string
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return strings.Join(keys, " ")
}
