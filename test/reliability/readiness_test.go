package reliability_test

import (
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sqlworker/worker/internal/workertest"
)

// Ensure a heartbeat that never succeeds while no run reports a failure (the
// first run hangs, every later one is skipped as still running) makes
// /readyz 503 once it has gone more than three of its intervals without a
// success. Before, skipped runs were ignored and /readyz said ok for ever.
// A run that hangs can only come from Go code, so this uses the leak build's
// "hang" mode (WORKER_LEAK=hang: every run blocks, ignoring its context).
func TestReadiness_HeartbeatSkipped(t *testing.T) {
	t.Parallel()
	const config = `
scheduler:
  shutdown_grace: 1s
builtin:
  heartbeat: {schedule: "@every 1s", timeout: 1h}
  wal_checkpoint: {enabled: false}
  optimize: {enabled: false}
  quick_check: {enabled: false}
  history_prune: {enabled: false}
`
	w := StartWorker(t, workertest.Options{Bin: leakBin, Config: config, Env: []string{"WORKER_LEAK=hang"}})
	started := time.Now()
	var body string
	took := w.WaitFor(t, "reporting the overdue heartbeat on /readyz", 30*time.Second, func() bool {
		var code int
		code, body, _ = w.Get("/readyz")
		return code == http.StatusServiceUnavailable && strings.Contains(body, "heartbeat: no success for")
	})
	want := regexp.MustCompile(`(?m)^heartbeat: no success for \d+(\.\d)?s \(3 intervals of 1s\)$`)
	if !want.MatchString(body) {
		t.Fatalf("/readyz: got %q, want a line matching %s", body, want)
	}
	mfs := w.Scrape(t)
	skipped := runs(mfs, "heartbeat", "skipped")
	if skipped < 2 {
		t.Errorf("heartbeat runs skipped before the 503: got %v, want ≥ 2", skipped)
	}
	if got := runs(mfs, "heartbeat", "success"); got != 0 {
		t.Errorf("heartbeat successes: got %v, want 0", got)
	}
	if code, _, err := w.Get("/healthz"); code != http.StatusOK {
		t.Errorf("GET /healthz: got %d (%v), want 200", code, err)
	}
	t.Logf("heartbeat hung, %v runs skipped: /readyz 503 %s after start (%s after the worker was ready): %q",
		skipped, time.Since(started).Round(100*time.Millisecond), took.Round(100*time.Millisecond), strings.TrimSpace(body))
}
