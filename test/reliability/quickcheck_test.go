package reliability_test

import (
	"testing"
	"time"

	"github.com/sqlworker/worker/internal/workertest"
)

// Ensure quick_check runs once at start: with the default config (quick_check
// @every 15m), worker_db_quick_check_ok is 1 soon after the worker is ready,
// rather than absent for 15 minutes, and the run is counted and recorded
// like any other.
func TestQuickCheck_AtStart(t *testing.T) {
	t.Parallel()
	w := StartWorker(t, workertest.Options{})
	took := w.WaitFor(t, "worker_db_quick_check_ok", 60*time.Second, func() bool {
		_, ok := w.Scrape(t)["worker_db_quick_check_ok"]
		return ok
	})
	mfs := w.Scrape(t)
	if got := workertest.Sum(mfs["worker_db_quick_check_ok"], nil); got != 1 {
		t.Fatalf("worker_db_quick_check_ok: got %v, want 1", got)
	}
	if got := runs(mfs, "quick_check", "success"); got < 1 {
		t.Fatalf("worker_job_runs_total{job_name=quick_check,result=success}: got %v, want ≥ 1", got)
	}
	if code, _ := w.Stop(t, 60*time.Second); code != 0 {
		t.Fatalf("exit code: got %d, want 0\n%s", code, w.Logs())
	}
	d := workertest.OpenDB(t, w.DBPath, "mode=ro")
	var rows int
	if err := d.QueryRow("SELECT count(*) FROM job_runs WHERE job = 'quick_check' AND result = 'success'").Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows < 1 {
		t.Fatalf("job_runs rows of quick_check: got %d, want ≥ 1", rows)
	}
	t.Logf("worker_db_quick_check_ok = 1, %s after ready, with quick_check @every 15m", took.Round(10*time.Millisecond))
}
