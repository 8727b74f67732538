package reliability_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/sqlworker/worker/internal/pgtest"
	"github.com/sqlworker/worker/internal/workertest"
)

// Ensure worker_job_running stays 1 for as long as a run is going, while
// ticks during it and run-now requests (409) are skipped: a job that
// overlaps every tick must not read 0. On SQLite and on PostgreSQL, where a
// skipped tick goes through the claims (jobs.Skipper).
func TestJobRunning_OverlapSkipped(t *testing.T) {
	t.Parallel()
	const sqliteSlow = `WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 10000000000) SELECT count(*) FROM c`
	for _, tc := range []struct {
		name, slowSQL string
		postgres      bool
	}{
		{"SQLite", sqliteSlow, false},
		{"Postgres", "SELECT pg_sleep(60)", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			config := workertest.BuiltinsOff + `
jobs:
  - name: slow
    schedule: "* * * * * *"
    timeout: 40s
    sql: "` + tc.slowSQL + `"
`
			o := workertest.Options{Config: config, LogLevel: "info", Args: []string{"--web.enable-admin-api"}}
			if tc.postgres {
				srv := pgtest.New(t)
				srv.Start(t)
				o.DBURL = srv.URL()
			}
			w := StartWorker(t, o)
			running := func() float64 {
				return workertest.Sum(w.Scrape(t)["worker_job_running"], map[string]string{"job_name": "slow"})
			}
			w.WaitFor(t, "slow running", time.Minute, func() bool { return running() == 1 })
			// Watch for 6 s: 6 ticks skipped and one run-now refused a second.
			var samples, conflicts int
			for end := time.Now().Add(6 * time.Second); time.Now().Before(end); {
				if code, err := api(w.Client, w, "POST", "/api/v1/jobs/slow/run", nil); err != nil || code != http.StatusConflict {
					t.Fatalf("POST /api/v1/jobs/slow/run while slow runs: got %d (%v), want 409", code, err)
				}
				conflicts++
				for range 10 {
					samples++
					if got := running(); got != 1 {
						t.Fatalf("worker_job_running{job_name=slow} at sample %d, after %d skipped run-nows, while the run goes on: got %v, want 1",
							samples, conflicts, got)
					}
					time.Sleep(100 * time.Millisecond)
				}
			}
			mfs := w.Scrape(t)
			if got := runs(mfs, "slow", "skipped"); got < 5 {
				t.Errorf("worker_job_runs_total{job_name=slow,result=skipped}: got %v, want at least 5 (ticks and run-nows during the run)", got)
			}
			if got := runs(mfs, "slow", "timeout"); got != 0 {
				t.Fatalf("the first run ended before the watch did (timeout %v); the test watched nothing", got)
			}
			t.Logf("%d samples of worker_job_running, all 1, %d run-nows refused, %v skipped", samples, conflicts, runs(mfs, "slow", "skipped"))
		})
	}
}
