package reliability_test

import (
	"database/sql"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sqlworker/worker/internal/web"
	"github.com/sqlworker/worker/internal/workertest"
)

// pauseWait bounds each wait of the pause tests.
const pauseWait = 60 * time.Second

// tickConfig has one job, tick, every second.
var tickConfig = workertest.BuiltinsOff + `
jobs:
  - name: tick
    schedule: "* * * * * *"
    sql: "SELECT 1"
`

// post sends POST path with body to w and returns the status and body.
func post(t *testing.T, w *workertest.Worker, path, body string) (int, string) {
	t.Helper()
	resp, err := w.Client.Post(w.URL(path), "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// jobState returns GET /api/v1/jobs's entry of job.
func jobState(t *testing.T, w *workertest.Worker, job string) web.JobStatus {
	t.Helper()
	var list struct{ Jobs []web.JobStatus }
	if code, err := api(w.Client, w, "GET", "/api/v1/jobs", &list); err != nil || code != 200 {
		t.Fatalf("GET /api/v1/jobs: got %d, %v", code, err)
	}
	for _, j := range list.Jobs {
		if j.Name == job {
			return j
		}
	}
	t.Fatalf("GET /api/v1/jobs: no job %s", job)
	return web.JobStatus{}
}

// jobValue returns the family's value for job on w, or -1 when it cannot
// be scraped.
func jobValue(w *workertest.Worker, family, job string) float64 {
	mfs, err := w.TryScrape()
	if err != nil || mfs[family] == nil {
		return -1
	}
	return workertest.Sum(mfs[family], map[string]string{"job_name": job})
}

// count returns the first column of a one-row query as an int, or -1.
func count(d *sql.DB, q string, args ...any) int {
	var n int
	if err := d.QueryRow(q, args...).Scan(&n); err != nil {
		return -1
	}
	return n
}

// Ensure a pause made through the admin API outlives a restart (SQLite):
// the restarted worker lists the job paused with its reason, exports
// worker_job_paused 1, records its ticks skipped and counts them, runs
// none of them, refuses a run-now (409), and runs the job again once
// resumed.
func TestPause_SurvivesRestart(t *testing.T) {
	t.Parallel()
	args := []string{"--web.enable-admin-api"}
	w := StartWorker(t, workertest.Options{Config: tickConfig, Args: args})
	d := workertest.OpenDB(t, w.DBPath, "mode=ro")
	w.WaitFor(t, "a success of tick", pauseWait, func() bool { return runs(w.Scrape(t), "tick", "success") >= 1 })
	code, body := post(t, w, "/api/v1/jobs/tick/pause", `{"reason": "reindexing <orders>"}`)
	if code != 200 || !strings.Contains(body, `"paused": true`) {
		t.Fatalf("POST pause: got %d %s, want 200 and paused", code, body)
	}
	pausedAt := jobState(t, w, "tick").PausedAt
	if pausedAt == nil {
		t.Fatal("paused_at: got null after the pause")
	}
	w.WaitFor(t, "a paused tick recorded", pauseWait, func() bool {
		return count(d, `SELECT count(*) FROM job_runs WHERE job = 'tick' AND result = 'skipped' AND error = 'job is paused: reindexing <orders>'`) >= 1
	})
	if code, _ := w.Stop(t, pauseWait); code != 0 {
		t.Fatalf("exit code: got %d, want 0", code)
	}

	restarted := time.Now().UTC().Format("2006-01-02T15:04:05.000Z")
	w2 := StartWorker(t, workertest.Options{Config: tickConfig, Args: args, DBPath: w.DBPath})
	j := jobState(t, w2, "tick")
	if !j.Paused || j.PausedReason != "reindexing <orders>" || j.PausedAt == nil || !j.PausedAt.Equal(*pausedAt) {
		t.Fatalf("tick after a restart: got paused %v reason %q at %v, want paused, reindexing <orders>, at %v", j.Paused, j.PausedReason, j.PausedAt, pausedAt)
	}
	if got := jobValue(w2, "worker_job_paused", "tick"); got != 1 {
		t.Errorf("worker_job_paused after a restart: got %v, want 1", got)
	}
	// The ticks missed while it was down are counted at start; then each
	// tick is recorded skipped and counted.
	w2.WaitFor(t, "3 ticks recorded skipped after the restart", pauseWait, func() bool {
		return count(d, `SELECT count(*) FROM job_runs WHERE job = 'tick' AND result = 'skipped' AND scheduled_at >= ?`, restarted) >= 3
	})
	if got := jobValue(w2, "worker_job_ticks_skipped_total", "tick"); got < 3 {
		t.Errorf("worker_job_ticks_skipped_total after the restart: got %v, want ≥ 3", got)
	}
	if got := runs(w2.Scrape(t), "tick", "success"); got != 0 {
		t.Errorf("worker_job_runs_total{result=success} while paused: got %v, want 0", got)
	}
	if code, body := post(t, w2, "/api/v1/jobs/tick/run", ""); code != http.StatusConflict || !strings.Contains(body, "paused") {
		t.Errorf("run-now of a paused job: got %d %s, want 409 paused", code, body)
	}
	// No run after the pause: every tick since is a skipped row, none a
	// success, and the refused run-now left no row.
	at := pausedAt.Add(time.Second).UTC().Format("2006-01-02T15:04:05.000Z")
	if n := count(d, `SELECT count(*) FROM job_runs WHERE job = 'tick' AND result <> 'skipped' AND scheduled_at >= ?`, at); n != 0 {
		t.Errorf("job_runs rows not skipped after the pause: got %d, want 0", n)
	}
	if code, body := post(t, w2, "/api/v1/jobs/tick/resume", ""); code != 200 || !strings.Contains(body, `"paused": false`) {
		t.Fatalf("POST resume: got %d %s, want 200 and not paused", code, body)
	}
	w2.WaitFor(t, "a success after the resume", pauseWait, func() bool { return runs(w2.Scrape(t), "tick", "success") >= 1 })
	if got := jobValue(w2, "worker_job_paused", "tick"); got != 0 {
		t.Errorf("worker_job_paused after the resume: got %v, want 0", got)
	}
	if n := count(d, `SELECT count(*) FROM job_pauses`); n != 0 {
		t.Errorf("job_pauses rows after the resume: got %d, want 0", n)
	}
}

// Ensure every one of three PostgreSQL replicas honours a pause made on
// one of them: each lists the job paused by r0 and exports
// worker_job_paused 1 within a second or so; from then on no replica runs
// the job, each tick is recorded skipped once across the replicas; a
// resume on another replica makes it run again.
func TestPause_Replicas(t *testing.T) {
	t.Parallel()
	rs := startReplicas(t, 3, tickConfig, "", func(_ int, o *workertest.Options) {
		o.Args = append(o.Args, "--web.enable-admin-api")
	})
	rs.waitDB(t, "a success of tick", replicaWait, func() bool {
		return count(rs.db, `SELECT count(*) FROM job_runs WHERE job = 'tick' AND result = 'success'`) >= 1
	})
	if code, body := post(t, rs.ws[0], "/api/v1/jobs/tick/pause", `{"reason": "failover drill"}`); code != 200 {
		t.Fatalf("POST pause on r0: got %d %s, want 200", code, body)
	}
	start := time.Now()
	for i, w := range rs.ws {
		w.WaitFor(t, fmt.Sprintf("r%d showing tick paused", i), pauseWait, func() bool { return jobValue(w, "worker_job_paused", "tick") == 1 })
	}
	t.Logf("every replica showed the pause %s after it", time.Since(start).Round(time.Millisecond))
	for i, w := range rs.ws {
		if j := jobState(t, w, "tick"); !j.Paused || j.PausedBy != "r0" || j.PausedReason != "failover drill" {
			t.Errorf("r%d: tick: got paused %v by %q reason %q, want paused by r0, failover drill", i, j.Paused, j.PausedBy, j.PausedReason)
		}
	}
	from := rs.serverNow(t).Add(time.Second)
	rs.waitDB(t, "5 ticks skipped after every replica saw the pause", replicaWait, func() bool {
		return count(rs.db, `SELECT count(*) FROM job_runs WHERE job = 'tick' AND scheduled_at >= $1`, from) >= 5
	})
	if n := count(rs.db, `SELECT count(*) FROM job_runs WHERE job = 'tick' AND scheduled_at >= $1 AND result <> 'skipped'`, from); n != 0 {
		t.Errorf("runs not skipped while every replica had the pause: got %d, want 0", n)
	}
	if n := count(rs.db, `SELECT count(*) FROM (SELECT scheduled_at FROM job_runs WHERE job = 'tick' AND scheduled_at >= $1
		GROUP BY scheduled_at HAVING count(*) > 1) d`, from); n != 0 {
		t.Errorf("paused ticks recorded more than once: got %d, want 0", n)
	}
	var skipped float64
	for _, w := range rs.ws {
		skipped += jobValue(w, "worker_job_ticks_skipped_total", "tick")
	}
	if skipped < 5 {
		t.Errorf("worker_job_ticks_skipped_total summed over the replicas: got %v, want ≥ 5", skipped)
	}
	if code, body := post(t, rs.ws[1], "/api/v1/jobs/tick/resume", ""); code != 200 {
		t.Fatalf("POST resume on r1: got %d %s, want 200", code, body)
	}
	resumed := rs.serverNow(t).Add(2 * time.Second) // the refresh and a tick
	rs.waitDB(t, "a success after the resume", replicaWait, func() bool {
		return count(rs.db, `SELECT count(*) FROM job_runs WHERE job = 'tick' AND result = 'success' AND scheduled_at >= $1`, resumed) >= 1
	})
	for i, w := range rs.ws {
		w.WaitFor(t, fmt.Sprintf("r%d showing tick resumed", i), pauseWait, func() bool { return jobValue(w, "worker_job_paused", "tick") == 0 })
	}
}
