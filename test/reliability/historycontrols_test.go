package reliability_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/sqlworker/worker/internal/workertest"
)

// historyCap is the history.max_rows_per_job of historyControlsConfig.
const historyCap = 3

// historyControlsConfig keeps no heartbeat or history_prune successes and
// at most historyCap rows of each job, pruned every second.
var historyControlsConfig = fmt.Sprintf(`
history:
  max_rows_per_job: %d
builtin:
  heartbeat: {schedule: "@every 1s", timeout: 5s, record_successes: false}
  wal_checkpoint: {enabled: false}
  optimize: {enabled: false}
  quick_check: {enabled: false}
  history_prune: {schedule: "@every 1s", timeout: 5s, record_successes: false}
jobs:
  - name: write
    schedule: "* * * * * *"
    timeout: 10s
    sql: |
      CREATE TABLE IF NOT EXISTS ticks (at TEXT);
      INSERT INTO ticks VALUES (strftime('%%Y-%%m-%%dT%%H:%%M:%%fZ'));
`, historyCap)

// Ensure the history controls against the built worker: with
// record_successes: false the heartbeat's successes are counted in
// worker_job_runs_total but leave no job_runs row, and with
// history.max_rows_per_job history_prune keeps at most that many rows of a
// job that has written more.
func TestHistoryControls(t *testing.T) {
	t.Parallel()
	w := StartWorker(t, workertest.Options{Config: historyControlsConfig})
	d := workertest.OpenDB(t, w.DBPath, "mode=ro")
	count := func(q string) int {
		t.Helper()
		var n int
		if err := d.QueryRow(q).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	var beats, writes float64
	var writeRows int
	w.WaitFor(t, fmt.Sprintf("%d writes counted and at most %d of their rows kept", historyCap+3, historyCap), 60*time.Second, func() bool {
		mfs := w.Scrape(t)
		beats, writes = runs(mfs, "heartbeat", "success"), runs(mfs, "write", "success")
		if workertest.Sum(mfs["worker_job_history_pending"], nil) != 0 {
			return false
		}
		writeRows = count("SELECT count(*) FROM job_runs WHERE job = 'write'")
		return writes >= historyCap+3 && writeRows <= historyCap
	})
	if beats < 3 {
		t.Errorf("worker_job_runs_total{job_name=heartbeat,result=success}: got %v, want ≥ 3", beats)
	}
	w.WaitFor(t, "the heartbeat count to grow", 30*time.Second, func() bool {
		return runs(w.Scrape(t), "heartbeat", "success") > beats
	})
	if code, _ := w.Stop(t, 60*time.Second); code != 0 {
		t.Fatalf("exit code: got %d, want 0\n%s", code, w.Logs())
	}
	if got := count("SELECT count(*) FROM job_runs WHERE job IN ('heartbeat', 'history_prune') AND result = 'success'"); got != 0 {
		t.Errorf("success rows of heartbeat and history_prune: got %d, want 0 (record_successes: false)", got)
	}
	if got := count("SELECT count(*) FROM heartbeat"); got != 1 {
		t.Errorf("heartbeat table rows: got %d, want 1 (the heartbeat still beats)", got)
	}
	t.Logf("%v writes counted, %d of their rows kept (cap %d); %v heartbeats counted, none recorded",
		writes, writeRows, historyCap, beats)
}
