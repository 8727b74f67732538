package reliability_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"
)

// TestReplicas_AllReady's heartbeat interval and how long it watches: 12
// intervals, as issue 18's 2 minutes were at the default interval of 10 s.
// Readiness wants a success within 3 intervals whatever the interval, so a
// shorter one proves the same in a fifth of the time.
const (
	replicasReadyBeat   = 2 * time.Second
	replicasReadyWindow = 12 * replicasReadyBeat
)

// Ensure three fault-free replicas with a heartbeat every 2 s (readiness
// wanting a success within 3 intervals, 6 s) stay ready: the heartbeat
// runs on every replica and is never claimed, so a replica that loses the
// claims of a user job three times in a row is still ready. Before, the
// heartbeat was claimed like any job, and each replica answered 503
// (heartbeat: no success for 30.4s at the default interval) once it had lost
// three claims in a row. Each replica's beat_at row stays within 3 intervals
// of the server's clock.
func TestReplicas_AllReady(t *testing.T) {
	const config = `scheduler:
  lease: 3s
builtin:
  heartbeat: {schedule: "*/2 * * * * *"}
jobs:
  - name: shared
    schedule: "* * * * * *"
    sql: SELECT 1
`
	rs := startReplicas(t, 3, config, "")
	rs.waitDB(t, "a beat of every replica", replicaWait, func() bool {
		return rs.int(t, `SELECT count(*) FROM heartbeat WHERE id IN ('r0', 'r1', 'r2')`) == 3
	})
	const poll = replicasReadyBeat / 2
	start := time.Now()
	polls := 0
	for time.Since(start) < replicasReadyWindow {
		for i, w := range rs.ws {
			code, body, err := w.Get("/readyz")
			if err != nil || code != http.StatusOK {
				t.Fatalf("replica r%d's /readyz %s into the window: got %d %q (%v), want 200", i, time.Since(start).Round(time.Second), code, body, err)
			}
		}
		polls++
		// Every replica's row is fresh: its own heartbeat wrote it.
		stale := rs.int(t, `SELECT count(*) FROM heartbeat WHERE id IN ('r0', 'r1', 'r2') AND beat_at < clock_timestamp() - make_interval(secs => $1)`, (3 * replicasReadyBeat).Seconds())
		if stale != 0 {
			t.Fatalf("%d of 3 replicas' heartbeat rows older than 3 intervals (%s) %s into the window", stale, 3*replicasReadyBeat, time.Since(start).Round(time.Second))
		}
		time.Sleep(poll)
	}
	if n := rs.int(t, `SELECT count(*) FROM job_claims WHERE job = 'heartbeat'`); n != 0 {
		t.Errorf("job_claims rows of the heartbeat: got %d, want 0 (never claimed)", n)
	}
	// 12 intervals in the window: each replica beat at each of them.
	if n := rs.int(t, `SELECT count(*) FROM job_runs WHERE job = 'heartbeat' AND result = 'success' AND started_at >= $1`, start); n < 3*11 {
		t.Errorf("heartbeat successes in job_runs over the window: got %d, want at least 33 (12 intervals on each of 3 replicas)", n)
	}
	for i := range rs.ws {
		owner := fmt.Sprintf("worker-r%d", i)
		if n := rs.int(t, `SELECT count(*) FROM job_claims WHERE job = 'shared' AND owner = $1 AND status = 'succeeded'`, owner); n == 0 {
			t.Errorf("claims of the shared job %s won: got 0, want some (the claims are shared)", owner)
		}
	}
	t.Logf("%d polls of 3 replicas over %s, every one 200", polls, time.Since(start).Round(time.Second))
	for i, w := range rs.ws {
		if code, _ := w.Stop(t, replicaWait); code != 0 {
			t.Errorf("replica r%d's exit code: got %d, want 0", i, code)
		}
	}
}
