package reliability_test

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"golang.org/x/sys/unix"

	"github.com/sqlworker/worker/internal/schema"
	"github.com/sqlworker/worker/internal/workertest"
)

// safetyConfig is the reproduction: heartbeat every second, a
// checkpoint every 2 s and a job inserting a 3 KB blob every second.
const safetyConfig = `
database:
  busy_timeout: 2s
builtin:
  heartbeat: {schedule: "@every 1s", timeout: 5s}
  wal_checkpoint: {schedule: "@every 2s"}
jobs:
  - name: write
    schedule: "* * * * * *"
    timeout: 10s
    sql: |
      CREATE TABLE IF NOT EXISTS ticks (at TEXT, pad BLOB);
      INSERT INTO ticks VALUES (strftime('%Y-%m-%dT%H:%M:%fZ'), randomblob(3000));
`

// refusedStart runs the worker binary with args, expects it to exit without
// becoming ready, and returns its exit code and the last line of its stderr.
func refusedStart(t *testing.T, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	argv := append([]string{"--web.listen-address", "127.0.0.1:0"}, args...)
	cmd := exec.CommandContext(ctx, workerBin, argv...)
	var stderr workertest.SyncBuffer // written by exec's copying goroutine while it is read here
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	for {
		select {
		case <-done:
			lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
			return cmd.ProcessState.ExitCode(), lines[len(lines)-1]
		case <-time.After(50 * time.Millisecond):
			if strings.Contains(stderr.String(), `msg="Worker ready"`) {
				_ = cmd.Process.Kill()
				<-done
				t.Fatalf("worker %v: started, want refused\n%s", args, stderr.String())
			}
		}
	}
}

// Ensure every path that reaches the database file of a running worker, not
// only its own path, is refused with the same one-line error naming the
// worker that holds it: a symlink, a hard link, a path through "..", and a
// bind mount of its directory.
func TestDBSafety_AliasRefused(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	data := filepath.Join(root, "data")
	mnt := filepath.Join(root, "mnt")
	for _, d := range []string{data, mnt, filepath.Join(root, "sub")} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	w := StartWorker(t, workertest.Options{Config: faultConfig("", 0), DBPath: filepath.Join(data, "worker.db")})
	w.WaitFor(t, "writing", 30*time.Second, func() bool { return runs(w.Scrape(t), "write", "success") >= 1 })

	symlink, hardlink := filepath.Join(root, "link.db"), filepath.Join(root, "hard.db")
	if err := os.Symlink(w.DBPath, symlink); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(w.DBPath, hardlink); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(data, mnt, "", unix.MS_BIND, ""); err != nil {
		t.Fatalf("bind mount (the test needs root): %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(mnt, unix.MNT_DETACH) })

	pid := strconv.Itoa(w.Cmd.Process.Pid)
	for _, tc := range []struct{ name, path string }{
		{"SamePath", w.DBPath},
		{"Symlink", symlink},
		{"HardLink", hardlink},
		{"DotDot", filepath.Join(root, "sub", "..", "data", "worker.db")},
		{"BindMount", filepath.Join(mnt, "worker.db")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			code, line := refusedStart(t, "--db.path", tc.path)
			if code != 1 {
				t.Errorf("exit code: got %d, want 1", code)
			}
			want := "worker: database is in use by another worker: " + tc.path + " is locked (pid " + pid + ")"
			if line != want {
				t.Errorf("error: got %q, want %q", line, want)
			}
			t.Logf("%s refused in %s: %s", tc.path, time.Since(start).Round(time.Millisecond), line)
		})
	}
	// The first worker never noticed: each tick is one row.
	if code, _ := w.Stop(t, 60*time.Second); code != 0 {
		t.Errorf("exit code of the first worker: got %d, want 0", code)
	}
	for _, p := range []string{symlink + ".lock", hardlink + ".lock", filepath.Join(mnt, "worker.db.lock")} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s: left behind by a refused start", p)
		}
	}
}

// opened returns worker_db_init_calls_total{result="opened"}.
func opened(t *testing.T, w *workertest.Worker) float64 {
	return workertest.Sum(w.Scrape(t)["worker_db_init_calls_total"], map[string]string{"result": "opened"})
}

// runSidecarRemoved removes the database's -wal or -shm (suffix) under a
// worker running the reproduction, and checks that the worker
// notices, keeps every write it reported, recovers by itself to a database
// whose integrity_check is ok, and writes again.
func runSidecarRemoved(t *testing.T, suffix string) {
	w := StartWorker(t, workertest.Options{Config: safetyConfig})
	w.WaitFor(t, "writing", 30*time.Second, func() bool { return runs(w.Scrape(t), "write", "success") >= 3 })
	time.Sleep(time.Second) // the "after 3 s"
	before := runs(w.Scrape(t), "write", "success")
	sidecar := w.DBPath + suffix
	if err := os.Remove(sidecar); err != nil {
		t.Fatal(err)
	}
	removed := time.Now()

	noticed := w.WaitFor(t, "noticing the removed "+suffix, 30*time.Second, func() bool {
		return strings.Contains(w.Logs(), `msg="Database -wal or -shm changed under the open handle`)
	})
	reopened := w.WaitFor(t, "reopening the database", 30*time.Second, func() bool { return opened(t, w) >= 2 })
	w.WaitFor(t, "ready again", 30*time.Second, func() bool { return w.Status("/readyz") == http.StatusOK })
	mid := runs(w.Scrape(t), "write", "success")
	w.WaitFor(t, "writing again", 30*time.Second, func() bool { return runs(w.Scrape(t), "write", "success") >= mid+3 })
	if _, err := os.Stat(sidecar); err != nil {
		t.Errorf("%s after the recovery: %v, want a new file", suffix, err)
	}
	if strings.Contains(w.Logs(), "malformed") {
		t.Errorf("log: a run met a malformed database")
	}
	// Every write reported as a success is in the database.
	d := workertest.OpenDB(t, w.DBPath, "_busy_timeout=10000")
	if got := integrityCheck(t, d); got != "ok" {
		t.Fatalf("integrity_check while the worker runs: got %q, want ok", got)
	}
	last := runs(w.Scrape(t), "write", "success")
	var rows float64
	if err := d.QueryRow("SELECT count(*) FROM ticks").Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows < last {
		t.Errorf("rows in ticks: got %.0f, want ≥ %.0f (the successful writes reported)", rows, last)
	}
	d.Close()
	if code, _ := w.Stop(t, 60*time.Second); code != 0 {
		t.Errorf("exit code: got %d, want 0", code)
	}
	d = workertest.OpenDB(t, w.DBPath, "mode=ro")
	if got := integrityCheck(t, d); got != "ok" {
		t.Fatalf("integrity_check after the stop: got %q, want ok", got)
	}
	t.Logf("%s removed after %.0f writes: noticed after %s, reopened %s later (%s after the removal); %.0f rows for %.0f successful writes; integrity_check ok",
		suffix, before, noticed.Round(time.Millisecond), reopened.Round(time.Millisecond), time.Since(removed).Round(time.Millisecond), rows, last)
}

// Ensure removing the -wal under a running worker (the reproduction)
// no longer corrupts the database: the worker notices, lets no connection
// start a second -wal, checkpoints the removed one through its open
// connections, reopens, and every reported write is kept.
func TestDBSafety_WALRemoved(t *testing.T) {
	t.Parallel()
	runSidecarRemoved(t, "-wal")
}

// Ensure removing the -shm is noticed too: another process opening the
// database would otherwise build a second index of the -wal.
func TestDBSafety_SHMRemoved(t *testing.T) {
	t.Parallel()
	runSidecarRemoved(t, "-shm")
}

// Ensure a database that SQLite reports malformed is a loud fault: /readyz
// names it, worker_db_corrupt is 1, jobs stop writing to it, and the worker
// exits 1 at shutdown.
func TestDBSafety_Corrupt(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "worker.db")
	// A table that only the job reads, so that its pages are never in the
	// -wal: a page overwritten in the main file is what the job reads next.
	setup, err := sql.Open("sqlite3", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := setup.Exec(`CREATE TABLE victim (x BLOB);
		WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200) INSERT INTO victim SELECT randomblob(3000) FROM n`); err != nil {
		t.Fatal(err)
	}
	var root, pageSize int64
	if err := setup.QueryRow("SELECT rootpage FROM sqlite_schema WHERE name = 'victim'").Scan(&root); err != nil {
		t.Fatal(err)
	}
	if err := setup.QueryRow("PRAGMA page_size").Scan(&pageSize); err != nil {
		t.Fatal(err)
	}
	setup.Close()

	w := StartWorker(t, workertest.Options{DBPath: path, Config: `
builtin:
  heartbeat: {schedule: "@every 1s", timeout: 5s}
jobs:
  - name: read
    schedule: "* * * * * *"
    timeout: 10s
    sql: |
      CREATE TABLE IF NOT EXISTS tally (n INTEGER);
      INSERT INTO tally SELECT count(*) FROM victim;
`})
	w.WaitFor(t, "reading", 30*time.Second, func() bool { return runs(w.Scrape(t), "read", "success") >= 2 })
	if got := workertest.Sum(w.Scrape(t)["worker_db_corrupt"], nil); got != 0 {
		t.Fatalf("worker_db_corrupt before the fault: got %v, want 0", got)
	}

	// The disk returns garbage for the table's root page.
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(bytes.Repeat([]byte{0xff}, int(pageSize)), (root-1)*pageSize); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	corrupted := time.Now()

	var body string
	detect := w.WaitFor(t, "reporting the corruption on /readyz", 30*time.Second, func() bool {
		var code int
		code, body, _ = w.Get("/readyz")
		return code == http.StatusServiceUnavailable && strings.Contains(body, "database: database is corrupt: "+path+": database disk image is malformed")
	})
	// Jobs stop writing to it: no run that starts from now on succeeds. A
	// run that began before the corruption was seen may still end, so the
	// count is taken once none is going.
	var mfs map[string]*dto.MetricFamily
	w.WaitFor(t, "the runs going when the corruption was seen to end", 30*time.Second, func() bool {
		mfs = w.Scrape(t)
		return workertest.Sum(mfs["worker_job_running"], nil) == 0
	})
	if got := workertest.Sum(mfs["worker_db_corrupt"], nil); got != 1 {
		t.Errorf("worker_db_corrupt: got %v, want 1", got)
	}
	successes := runs(mfs, "heartbeat", "success") + runs(mfs, "read", "success")
	failed := runs(mfs, "heartbeat", "failure")
	w.WaitFor(t, "heartbeats failing", 30*time.Second, func() bool { return runs(w.Scrape(t), "heartbeat", "failure") >= failed+2 })
	mfs = w.Scrape(t)
	if got := runs(mfs, "heartbeat", "success") + runs(mfs, "read", "success"); got != successes {
		t.Errorf("successful runs after the corruption was seen: got %v more, want 0", got-successes)
	}
	if !strings.Contains(w.Logs(), `msg="Job run failed" job=heartbeat`) || !strings.Contains(w.Logs(), "database is corrupt") {
		t.Errorf("log: no failed heartbeat naming the corruption")
	}
	code, _ := w.Stop(t, 60*time.Second)
	if code != 1 {
		t.Errorf("exit code: got %d, want 1", code)
	}
	t.Logf("corruption reported on /readyz %s after the page was overwritten (%s since): %q; exit %d",
		detect.Round(time.Millisecond), time.Since(corrupted).Round(time.Millisecond), strings.TrimSpace(body), code)
}

// Ensure a database the worker refuses is left exactly as it was: its bytes
// (the header's journal mode included) and its directory, with no -wal,
// -shm, -journal or lock file created; and that a path that is not a regular
// file is refused before anything is created beside it.
func TestDBSafety_RefusedUnchanged(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, sql, want string }{
		{"OtherJobRuns", "CREATE TABLE job_runs (id INTEGER PRIMARY KEY, name TEXT, payload BLOB); INSERT INTO job_runs VALUES (1, 'theirs', x'00');",
			"table job_runs has columns (id, name, payload), want (id, job, scheduled_at, started_at, ended_at, result, error, rows_affected, attempt, jitter_ms)"},
		{"NewerVersion", "CREATE TABLE notes (x); INSERT INTO notes VALUES (1); PRAGMA user_version = 99;",
			fmt.Sprintf("schema version 99 is newer than this worker's %d", schema.SQLiteVersion)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "app.db")
			o, err := sql.Open("sqlite3", "file:"+path)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := o.Exec(tc.sql); err != nil {
				t.Fatal(err)
			}
			o.Close()
			bytesBefore, namesBefore := workertest.FileAndDir(t, path)
			code, line := refusedStart(t, "--db.path", path)
			if code != 1 {
				t.Errorf("exit code: got %d, want 1", code)
			}
			if !strings.HasPrefix(line, "worker: cannot open database "+path+": ") || !strings.Contains(line, tc.want) {
				t.Errorf("error: got %q, want one line naming %s and saying %q", line, path, tc.want)
			}
			bytesAfter, namesAfter := workertest.FileAndDir(t, path)
			if !bytes.Equal(bytesBefore, bytesAfter) {
				t.Errorf("database bytes changed by a refused start (header bytes 18-19: %v before, %v after)", bytesBefore[18:20], bytesAfter[18:20])
			}
			if got, want := namesAfter, namesBefore; got != want {
				t.Errorf("directory after a refused start: got %s, want %s", got, want)
			}
			t.Logf("refused, %d bytes unchanged: %s", len(bytesAfter), line)
		})
	}
	t.Run("FIFO", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), "worker.db")
		if err := unix.Mkfifo(path, 0o644); err != nil {
			t.Fatal(err)
		}
		code, line := refusedStart(t, "--db.path", path)
		if want := "worker: cannot open database " + path + ": not a regular file (named pipe)"; code != 1 || line != want {
			t.Errorf("got exit %d %q, want exit 1 %q", code, line, want)
		}
		entries, _ := os.ReadDir(filepath.Dir(path))
		if len(entries) != 1 {
			t.Errorf("directory after a refused start: got %d entries, want only the FIFO", len(entries))
		}
	})
	t.Run("DevNull", func(t *testing.T) {
		t.Parallel()
		// Left behind by the reproduction, if it ran here.
		for _, p := range []string{"/dev/null.lock", "/dev/null-journal", "/dev/null-wal", "/dev/null-shm"} {
			_ = os.Remove(p)
		}
		code, line := refusedStart(t, "--db.path", "/dev/null")
		if want := "worker: cannot open database /dev/null: not a regular file (character device)"; code != 1 || line != want {
			t.Errorf("got exit %d %q, want exit 1 %q", code, line, want)
		}
		for _, p := range []string{"/dev/null.lock", "/dev/null-journal", "/dev/null-wal", "/dev/null-shm"} {
			if _, err := os.Lstat(p); err == nil {
				t.Errorf("%s: created by a refused start", p)
				_ = os.Remove(p)
			}
		}
	})
}

// Ensure a dropped worker table is recreated, while the worker runs (before
// the next heartbeat writes) and at start-up, so that the worker becomes
// ready again instead of staying 503 for ever.
func TestDBSafety_DroppedTables(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "worker.db")
	w := StartWorker(t, workertest.Options{DBPath: path, Config: faultConfig("", 0)})
	d := workertest.OpenDB(t, path, "_busy_timeout=10000")
	exists := func(table string) bool {
		var n int
		err := d.QueryRow("SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = ?", table).Scan(&n)
		return err == nil && n == 1
	}
	for _, table := range []string{"job_runs", "heartbeat"} {
		w.WaitFor(t, "ready", 30*time.Second, func() bool { return w.Status("/readyz") == http.StatusOK })
		if _, err := d.Exec("DROP TABLE " + table); err != nil {
			t.Fatal(err)
		}
		dropped := time.Now()
		took := w.WaitFor(t, "recreating "+table, 30*time.Second, func() bool { return exists(table) })
		w.WaitFor(t, "ready after "+table+" was dropped", 30*time.Second, func() bool { return w.Status("/readyz") == http.StatusOK })
		w.WaitFor(t, "writing "+table+" again", 30*time.Second, func() bool {
			var n int
			err := d.QueryRow("SELECT count(*) FROM " + table).Scan(&n)
			return err == nil && n >= 1
		})
		t.Logf("DROP TABLE %s: recreated after %s, ready %s after the drop", table, took.Round(time.Millisecond), time.Since(dropped).Round(time.Millisecond))
	}
	if !strings.Contains(w.Logs(), `msg="Database schema repaired"`) {
		t.Errorf("log: no line saying the schema was repaired")
	}
	if code, _ := w.Stop(t, 60*time.Second); code != 0 {
		t.Errorf("exit code: got %d, want 0", code)
	}

	// With the worker stopped: both tables and an index dropped, then a start.
	if _, err := d.Exec("DROP TABLE heartbeat; DROP INDEX job_runs_ended; DROP TABLE job_runs"); err != nil {
		t.Fatal(err)
	}
	d.Close()
	w = StartWorker(t, workertest.Options{DBPath: path, Config: faultConfig("", 0)})
	took := w.WaitFor(t, "ready after a start with the tables dropped", 30*time.Second, func() bool { return w.Status("/readyz") == http.StatusOK })
	d = workertest.OpenDB(t, path, "mode=ro")
	var names string
	if err := d.QueryRow("SELECT group_concat(name, ' ') FROM (SELECT name FROM sqlite_schema WHERE name IN ('job_runs', 'job_runs_job_started', 'job_runs_ended', 'heartbeat') ORDER BY name)").Scan(&names); err != nil {
		t.Fatal(err)
	}
	if want := "heartbeat job_runs job_runs_ended job_runs_job_started"; names != want {
		t.Errorf("worker objects after the start: got %q, want %q", names, want)
	}
	if code, _ := w.Stop(t, 60*time.Second); code != 0 {
		t.Errorf("exit code: got %d, want 0", code)
	}
	t.Logf("started on a database without its tables: repaired, ready after %s", took.Round(time.Millisecond))
}
