package reliability_test

import (
	"strings"
	"testing"
	"time"

	"github.com/sqlworker/worker/internal/db"
	"github.com/sqlworker/worker/internal/jobs"
	"github.com/sqlworker/worker/internal/workertest"
)

// Ensure a job that ignores its context past the grace period does not hold
// the worker: SIGTERM still ends the process within the grace period plus
// the force timeout, and the run is recorded as cancelled. A Go job that
// ignores its context can only come from Go code, so this uses the leak
// build's "hang" mode (WORKER_LEAK=hang: every run blocks for ever); the
// production binary has no such code.
func TestShutdown_JobIgnoresContext(t *testing.T) {
	t.Parallel()
	const grace = 1 * time.Second
	config := `
scheduler:
  shutdown_grace: 1s
` + workertest.BuiltinsOff + `
jobs:
  - name: stuck
    schedule: "* * * * * *"
    timeout: 1h
    sql: SELECT 1
`
	w := StartWorker(t, workertest.Options{Bin: leakBin, Config: config, Env: []string{"WORKER_LEAK=hang"}})
	w.WaitFor(t, "running stuck", 30*time.Second, func() bool {
		return workertest.Sum(w.Scrape(t)["worker_job_running"], map[string]string{"job_name": "stuck"}) == 1
	})
	bound := grace + jobs.DefaultForceTimeout + 5*time.Second // 5 s: HTTP shutdown and the final checkpoint
	code, took := w.Stop(t, bound)
	if code != 0 {
		t.Errorf("exit code: got %d, want 0", code)
	}
	for _, want := range []string{"Shutdown grace period over, cancelling runs", "Jobs did not stop", "Database closed"} {
		if !strings.Contains(w.Logs(), want) {
			t.Errorf("log: missing %q", want)
		}
	}
	d := workertest.OpenDB(t, w.DBPath, "mode=ro")
	var result, errText string
	err := d.QueryRow("SELECT result, error FROM job_runs WHERE job = 'stuck' AND result != 'skipped' ORDER BY id DESC LIMIT 1").Scan(&result, &errText)
	if err != nil {
		t.Fatal(err)
	}
	if result != string(jobs.Cancelled) || errText != jobs.ErrAbandoned.Error() {
		t.Fatalf("run of stuck: got %s %q, want %s %q", result, errText, jobs.Cancelled, jobs.ErrAbandoned)
	}
	t.Logf("exited %s after SIGTERM (grace %s + force timeout %s; bound %s); the stuck run recorded as %s: %s",
		took.Round(time.Millisecond), grace, jobs.DefaultForceTimeout, bound, result, errText)
}

// Ensure leaked rows that pin every pool connection cannot hold the worker
// for ever at shutdown: the checkpoint and the close share one deadline, and
// the worker exits 1 saying why. (Found by the soak self-test: before, the
// worker in WORKER_LEAK=rows mode never exited after SIGTERM.)
func TestShutdown_LeakedRowsPinPool(t *testing.T) {
	t.Parallel()
	config := `
scheduler:
  shutdown_grace: 1s
` + workertest.BuiltinsOff + `
jobs:
  - name: reader
    schedule: "* * * * * *"
    timeout: 2s
    sql: SELECT 1
`
	w := StartWorker(t, workertest.Options{Bin: leakBin, Config: config, Env: []string{"WORKER_LEAK=rows"}})
	w.WaitFor(t, "pool pinned", 30*time.Second, func() bool {
		return workertest.Sum(w.Scrape(t)["go_sql_in_use_connections"], nil) == 4
	})
	bound := time.Second + jobs.DefaultForceTimeout + db.DefaultCloseTimeout + 10*time.Second
	code, took := w.Stop(t, bound)
	if code != 1 {
		t.Errorf("exit code: got %d, want 1 (the database did not close cleanly)", code)
	}
	if want := db.ErrCloseTimeout.Error(); !strings.Contains(w.Logs(), want) {
		t.Errorf("log: missing %q", want)
	}
	t.Logf("exited %d in %s after SIGTERM with every pool connection pinned by leaked rows (bound %s)", code, took.Round(time.Millisecond), bound)
}
