package reliability_test

import (
	"database/sql"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/sqlworker/worker/internal/jobhistory"
	"github.com/sqlworker/worker/internal/workertest"
)

// historyConfig runs the heartbeat and one writing job every second, with
// nothing that deletes history (history_prune off). extra goes under
// database:, pad is the blob size each write adds.
func historyConfig(extra string, pad int) string {
	return fmt.Sprintf(`
database:
%s
builtin:
  heartbeat: {schedule: "@every 1s", timeout: 5s}
  wal_checkpoint: {enabled: false}
  optimize: {enabled: false}
  quick_check: {enabled: false}
  history_prune: {enabled: false}
jobs:
  - name: write
    schedule: "* * * * * *"
    timeout: 20s
    sql: |
      CREATE TABLE IF NOT EXISTS ticks (at TEXT, pad BLOB);
      INSERT INTO ticks VALUES (strftime('%%Y-%%m-%%dT%%H:%%M:%%fZ'), zeroblob(%d));
`, extra, pad)
}

// historyFault is a database fault during which runs cannot be written to
// job_runs.
type historyFault struct {
	config        string
	inject, clear func(t *testing.T, w *workertest.Worker)
}

// countedRuns returns worker_job_runs_total by "job/result".
func countedRuns(mfs map[string]*dto.MetricFamily) map[string]float64 {
	out := map[string]float64{}
	for _, m := range mfs["worker_job_runs_total"].GetMetric() {
		var job, result string
		for _, l := range m.GetLabel() {
			switch l.GetName() {
			case "job_name":
				job = l.GetValue()
			case "result":
				result = l.GetValue()
			}
		}
		if v := m.GetCounter().GetValue(); v != 0 {
			out[job+"/"+result] = v
		}
	}
	return out
}

// recordedRuns returns the rows of job_runs by "job/result".
func recordedRuns(t *testing.T, d *sql.DB) map[string]float64 {
	t.Helper()
	rows, err := d.QueryContext(workertest.CtxTimeout(t, 10*time.Second), "SELECT job || '/' || result, count(*) FROM job_runs GROUP BY 1")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]float64{}
	for rows.Next() {
		var k string
		var n float64
		if err := rows.Scan(&k, &n); err != nil {
			t.Fatal(err)
		}
		out[k] = n
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func format(m map[string]float64) string {
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%v ", k, m[k])
	}
	return strings.TrimSpace(b.String())
}

func oneLine(s string) string { return strings.ReplaceAll(strings.TrimSpace(s), "\n", "; ") }

func total(m map[string]float64) (n float64) {
	for _, v := range m {
		n += v
	}
	return n
}

// runHistoryFault injects f into a running worker and checks that runs
// finished during the fault are held (worker_job_history_pending > 0, and
// /readyz names the history), and that once it is cleared every counted run
// is a row in job_runs: worker_job_runs_total equals the rows, per job and
// result, and the held rows keep the times of their runs.
func runHistoryFault(t *testing.T, f historyFault) {
	t.Helper()
	w := StartWorker(t, workertest.Options{Config: f.config})
	d := workertest.OpenDB(t, w.DBPath, "mode=ro")
	w.WaitFor(t, "running", 30*time.Second, func() bool { return runs(w.Scrape(t), "write", "success") >= 1 })

	f.inject(t, w)
	injected := time.Now()
	// Held: a history write failed (the history line on /readyz) and rows
	// wait (worker_job_history_pending; it also counts rows queued behind
	// a write in progress, so it alone proves nothing).
	var maxPending float64
	var body string
	w.WaitFor(t, "holding runs that cannot be written", 60*time.Second, func() bool {
		pending := workertest.Sum(w.Scrape(t)["worker_job_history_pending"], nil)
		maxPending = max(maxPending, pending)
		var code int
		code, body, _ = w.Get("/readyz")
		return pending >= 2 && code == http.StatusServiceUnavailable && strings.Contains(body, "history: cannot record job runs: ")
	})
	heldFor := time.Since(injected)
	f.clear(t, w)
	cleared := time.Now()

	caughtUp := w.WaitFor(t, "writing the held runs", 60*time.Second, func() bool {
		return workertest.Sum(w.Scrape(t)["worker_job_history_pending"], nil) == 0
	})
	w.WaitFor(t, "ready again", 30*time.Second, func() bool { return w.Status("/readyz") == http.StatusOK })

	// Runs keep finishing: compare in a window where the counters did not
	// move and nothing was held (a run is counted a moment before its row
	// is written).
	var counted, recorded map[string]float64
	deadline := time.Now().Add(30 * time.Second)
	for {
		before := w.Scrape(t)
		recorded = recordedRuns(t, d)
		after := w.Scrape(t)
		counted = countedRuns(after)
		if format(countedRuns(before)) == format(counted) && workertest.Sum(after["worker_job_history_pending"], nil) == 0 &&
			format(counted) == format(recorded) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("job_runs after recovery:\n got %s (%v rows)\nwant %s (worker_job_runs_total, %v runs)",
				format(recorded), total(recorded), format(counted), total(counted))
		}
		time.Sleep(50 * time.Millisecond) // polling a condition
	}
	failed := counted["write/failure"] + counted["write/timeout"] + counted["heartbeat/failure"] + counted["heartbeat/timeout"]
	if failed < 1 {
		t.Errorf("failed runs during the fault: got %v, want ≥ 1", failed)
	}
	// The held rows carry their runs' times: runs that failed ended before
	// the fault cleared, although their rows were written after.
	var early int
	if err := d.QueryRow("SELECT count(*) FROM job_runs WHERE result != 'success' AND ended_at < ?",
		jobhistory.FormatTime(cleared)).Scan(&early); err != nil {
		t.Fatal(err)
	}
	if float64(early) < failed {
		t.Errorf("rows of failed runs that ended before the fault cleared: got %d, want %v", early, failed)
	}
	mfs := w.Scrape(t)
	if got := workertest.Sum(mfs["worker_job_history_dropped_total"], nil); got != 0 {
		t.Errorf("worker_job_history_dropped_total: got %v, want 0", got)
	}
	t.Logf("held after %s: %q; up to %v runs held (%v failed runs); all written %s after the fault cleared; job_runs = worker_job_runs_total = %v rows (%s)",
		heldFor.Round(100*time.Millisecond), oneLine(body), maxPending, failed, caughtUp.Round(100*time.Millisecond), total(recorded), format(recorded))
	if code, _ := w.Stop(t, 60*time.Second); code != 0 {
		t.Errorf("exit code: got %d, want 0", code)
	}
}

// Ensure runs made while the database is full reach job_runs once space is
// freed. (Before: 23 of 67 runs lost.)
func TestHistory_DatabaseFull(t *testing.T) {
	t.Parallel()
	const maxPages = 300
	var other *sql.DB
	runHistoryFault(t, historyFault{
		config: historyConfig(fmt.Sprintf("  busy_timeout: 500ms\n  max_page_count: %d", maxPages), 2000),
		inject: func(t *testing.T, w *workertest.Worker) {
			other = workertest.OpenDB(t, w.DBPath, "_busy_timeout=10000")
			fillDatabase(t, other, maxPages)
		},
		clear: func(t *testing.T, w *workertest.Worker) {
			if _, err := other.Exec("DELETE FROM ballast"); err != nil {
				t.Fatal(err)
			}
		},
	})
}

// fillDatabase grows the database from another connection, which has no
// max_page_count, past maxPages until no page is free.
func fillDatabase(t *testing.T, d *sql.DB, maxPages int) {
	t.Helper()
	if _, err := d.Exec("CREATE TABLE IF NOT EXISTS ballast (b BLOB)"); err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		var pages, free int
		if err := d.QueryRow("SELECT (SELECT page_count FROM pragma_page_count), (SELECT freelist_count FROM pragma_freelist_count)").Scan(&pages, &free); err != nil {
			t.Fatal(err)
		}
		if pages > maxPages+10 && free == 0 {
			return
		}
		if i > 10*maxPages {
			t.Fatalf("cannot fill the database: %d pages, %d free", pages, free)
		}
		if _, err := d.Exec("INSERT INTO ballast VALUES (randomblob(3500))"); err != nil {
			t.Fatal(err)
		}
	}
}

// Ensure runs made while the database file is read-only (chattr +i) reach
// job_runs once it is writable. (Before: 15 of 30 runs lost.)
func TestHistory_ReadOnly(t *testing.T) {
	t.Parallel()
	var files []string
	t.Cleanup(func() {
		for _, f := range files {
			setImmutable(f, false)
		}
	})
	runHistoryFault(t, historyFault{
		config: historyConfig("  busy_timeout: 500ms", 0),
		inject: func(t *testing.T, w *workertest.Worker) {
			// The -shm stays writable: see TestFault_ReadOnly.
			files = []string{w.DBPath, w.DBPath + "-wal"}
			for _, f := range files {
				if err := setImmutable(f, true); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.WriteFile(w.DBPath, nil, 0o644); err == nil {
				t.Fatal("write to the immutable database: got nil, want an error")
			}
		},
		clear: func(t *testing.T, w *workertest.Worker) {
			for _, f := range files {
				if err := setImmutable(f, false); err != nil {
					t.Fatal(err)
				}
			}
		},
	})
}

// holdLock returns an inject and a clear that hold the write lock from
// another process's connection.
func holdLock() (inject, clear func(t *testing.T, w *workertest.Worker)) {
	var tx *sql.Tx
	inject = func(t *testing.T, w *workertest.Worker) {
		other := workertest.OpenDB(t, w.DBPath, "_txlock=immediate&_busy_timeout=10000")
		var err error
		if tx, err = other.Begin(); err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec("CREATE TABLE IF NOT EXISTS held (x)"); err != nil {
			t.Fatal(err)
		}
	}
	clear = func(t *testing.T, w *workertest.Worker) {
		if err := tx.Rollback(); err != nil {
			t.Fatal(err)
		}
	}
	return inject, clear
}

// Ensure runs made while another process holds the write lock past
// busy_timeout reach job_runs once it is released.
func TestHistory_LockHeld(t *testing.T) {
	t.Parallel()
	inject, clear := holdLock()
	runHistoryFault(t, historyFault{config: historyConfig("  busy_timeout: 500ms", 0), inject: inject, clear: clear})
}

// Ensure runs reach job_runs when the pool has one connection and a slow
// job holds it for longer than a history write waits (5 s): the history
// writes time out waiting for the connection. The job is slow because it
// waits 8 s (busy_timeout) for a lock that the test holds; the heartbeat
// and the history wait for the pool, not the lock. (Before: a heartbeat row
// lost.)
func TestHistory_PoolOfOneSlowJob(t *testing.T) {
	t.Parallel()
	inject, clear := holdLock()
	runHistoryFault(t, historyFault{
		config: historyConfig("  busy_timeout: 8s\n  max_open_conns: 1", 0),
		inject: inject,
		clear:  clear,
	})
}
