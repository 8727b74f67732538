package reliability_test

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sqlworker/worker/internal/jobhistory"
	"github.com/sqlworker/worker/internal/web"
	"github.com/sqlworker/worker/internal/workertest"
)

// cluster is one worker on SQLite, or three replicas on one PostgreSQL
// server, and the test's own handle on their database.
type cluster struct {
	name     string
	postgres bool
	db       *sql.DB
	ws       []*workertest.Worker
}

// slowSQL runs until its run's context is done: a query the cancel
// interrupts (SQLite's progress handler, PostgreSQL's cancel request).
func slowSQL(postgres bool) string {
	if postgres {
		return "SELECT pg_sleep(60)"
	}
	return "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 10000000000) SELECT count(*) FROM c"
}

// startCluster starts the workers of each backend with the config that
// jobs returns for it; setup is SQL run on the database first. Each is
// run as a parallel subtest.
func forEachCluster(t *testing.T, jobs func(postgres bool) string, setup string, test func(t *testing.T, c *cluster)) {
	for _, postgres := range []bool{false, true} {
		name := "SQLite"
		if postgres {
			name = "Postgres"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c := &cluster{name: name, postgres: postgres}
			config := workertest.BuiltinsOff + jobs(postgres)
			if postgres {
				rs := startReplicas(t, 3, "scheduler:\n  lease: 1s\n"+config, setup, func(_ int, o *workertest.Options) {
					o.Args = append(o.Args, "--web.enable-admin-api")
				})
				c.db, c.ws = rs.db, rs.ws
			} else {
				path := filepath.Join(t.TempDir(), "worker.db")
				c.db = workertest.OpenDB(t, path, "_busy_timeout=5000")
				if setup != "" {
					if _, err := c.db.Exec(setup); err != nil {
						t.Fatal(err)
					}
				}
				c.ws = []*workertest.Worker{StartWorker(t, workertest.Options{Config: config, DBPath: path, LogLevel: "info",
					Args: []string{"--web.enable-admin-api"}})}
			}
			test(t, c)
		})
	}
}

// w returns the i-th worker, round the cluster: three requests go to three
// replicas on PostgreSQL, all to the one worker on SQLite.
func (c *cluster) w(i int) *workertest.Worker { return c.ws[i%len(c.ws)] }

// runRow is a job_runs row.
type runRow struct {
	scheduled, started, ended time.Time
	result, err               string
}

// runRows returns the job's job_runs rows but the skipped ones, by start,
// and the number of skipped ones.
func (c *cluster) runRows(t *testing.T, job string) (rows []runRow, skipped int) {
	t.Helper()
	q := `SELECT scheduled_at, started_at, ended_at, result, coalesce(error, '') FROM job_runs WHERE job = '` + job + `' ORDER BY started_at`
	rs, err := c.db.Query(q)
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	for rs.Next() {
		var r runRow
		var s, st, e any
		if err := rs.Scan(&s, &st, &e, &r.result, &r.err); err != nil {
			t.Fatal(err)
		}
		r.scheduled, r.started, r.ended = anyTime(t, s), anyTime(t, st), anyTime(t, e)
		if r.result == "skipped" {
			skipped++
			continue
		}
		rows = append(rows, r)
	}
	if err := rs.Err(); err != nil {
		t.Fatal(err)
	}
	return rows, skipped
}

// anyTime is a job_runs time: text on SQLite, timestamptz on PostgreSQL.
func anyTime(t *testing.T, v any) time.Time {
	t.Helper()
	switch v := v.(type) {
	case time.Time:
		return v
	case string:
		tm, err := time.Parse(jobhistory.TimeFormat, v)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	case []byte:
		return anyTime(t, string(v))
	}
	t.Fatalf("a job_runs time: got a %T", v)
	return time.Time{}
}

// noOverlap fails the test when a run started before the one before it
// ended: job_runs times are to the millisecond.
func noOverlap(t *testing.T, job string, rows []runRow) {
	t.Helper()
	for i := 1; i < len(rows); i++ {
		if rows[i].started.Before(rows[i-1].ended) {
			t.Errorf("%s: run of tick %s started at %s, before the run of tick %s ended at %s", job,
				rows[i].scheduled.Format(time.TimeOnly), rows[i].started.Format("15:04:05.000"),
				rows[i-1].scheduled.Format(time.TimeOnly), rows[i-1].ended.Format("15:04:05.000"))
		}
	}
}

// postJSON sends a JSON body (nil: none) and decodes the answer into v.
func postJSON(w *workertest.Worker, path string, body, v any) (int, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		rd = bytes.NewReader(b)
	}
	// Longer than a buffered run's wait and run.
	return apiBody(&http.Client{Timeout: 30 * time.Second}, w, "POST", path, rd, v)
}

// answer is the answer to a run-now.
type answer struct {
	code int
	run  web.RunRecord
	err  error
}

func runNowAsync(w *workertest.Worker, job string) <-chan answer {
	out := make(chan answer, 1)
	go func() {
		var a answer
		a.code, a.err = postJSON(w, "/api/v1/jobs/"+job+"/run", nil, &a.run)
		out <- a
	}()
	return out
}

// waitRunning waits until the job runs on w.
func waitRunning(t *testing.T, w *workertest.Worker, job string) {
	t.Helper()
	w.WaitFor(t, job+" running", time.Minute, func() bool {
		mfs, err := w.TryScrape()
		return err == nil && workertest.Sum(mfs["worker_job_running"], map[string]string{"job_name": job}) == 1
	})
}

// nowJobs are jobs run by run-now only, one per policy, each run taking
// its timeout of 3 s.
func nowJobs(postgres bool) string {
	return fmt.Sprintf(`
jobs:
  - {name: now_skip, schedule: "@yearly", timeout: 3s, sql: "%[1]s"}
  - {name: now_buffer, schedule: "@yearly", timeout: 3s, overlap: buffer_one, sql: "%[1]s"}
  - {name: now_replace, schedule: "@yearly", timeout: 3s, overlap: replace, sql: "%[1]s"}
`, slowSQL(postgres))
}

// Ensure each overlap policy holds for run-now requests on one worker on
// SQLite and across three replicas on PostgreSQL, where each request goes
// to another replica than the one running the job, so that only the claims
// tell it: skip answers 409; buffer_one runs one request after the running
// run and answers 409 to the other; replace cancels the running run
// (recorded cancelled, its error saying it was replaced) and runs the new
// one after it returned.
func TestOverlap(t *testing.T) {
	t.Parallel()
	forEachCluster(t, nowJobs, "", func(t *testing.T, c *cluster) {
		t.Run("Skip", func(t *testing.T) {
			first := runNowAsync(c.w(0), "now_skip")
			waitRunning(t, c.w(0), "now_skip")
			var rec web.RunRecord
			if code, err := postJSON(c.w(1), "/api/v1/jobs/now_skip/run", nil, &rec); err != nil || code != http.StatusConflict || rec.Result != "skipped" {
				t.Errorf("run-now while now_skip runs: got %d %q (%v), want 409 skipped", code, rec.Result, err)
			}
			if a := <-first; a.err != nil || a.code != http.StatusOK || a.run.Result != "timeout" {
				t.Errorf("first run-now: got %d %q (%v), want 200 timeout", a.code, a.run.Result, a.err)
			}
		})
		t.Run("BufferOne", func(t *testing.T) { testBufferOneRunNow(t, c) })
		t.Run("Replace", func(t *testing.T) { testReplaceRunNow(t, c) })
	})
}

// Ensure the runs of a job that ticks every second, each run longer than a
// tick, follow its overlap policy, on SQLite and on three PostgreSQL
// replicas: under buffer_one each run is followed at once by one of a tick
// that came during it, the other ticks skipped; under replace each run is
// cancelled by the next tick; no two runs overlap, and no tick runs twice.
// One job per database: on SQLite a SQL job holds the write lock for its
// whole run.
func TestOverlap_Ticks(t *testing.T) {
	t.Parallel()
	t.Run("BufferOne", func(t *testing.T) {
		t.Parallel()
		forEachCluster(t, func(postgres bool) string {
			return fmt.Sprintf(`
jobs:
  - {name: tick_buffer, schedule: "* * * * * *", timeout: 2500ms, overlap: buffer_one, sql: "%s"}
`, slowSQL(postgres))
		}, "", testBufferOneTicks)
	})
	t.Run("Replace", func(t *testing.T) {
		t.Parallel()
		forEachCluster(t, func(postgres bool) string {
			return fmt.Sprintf(`
jobs:
  - {name: tick_replace, schedule: "* * * * * *", timeout: 30s, overlap: replace, sql: "%s"}
`, slowSQL(postgres))
		}, "", testReplaceTicks)
	})
}

func testBufferOneRunNow(t *testing.T, c *cluster) {
	first := runNowAsync(c.w(0), "now_buffer")
	waitRunning(t, c.w(0), "now_buffer")
	second, third := runNowAsync(c.w(1), "now_buffer"), runNowAsync(c.w(2), "now_buffer")
	a1 := <-first
	if a1.err != nil || a1.code != http.StatusOK || a1.run.Result != "timeout" {
		t.Fatalf("first run-now: got %d %q (%v), want 200 timeout", a1.code, a1.run.Result, a1.err)
	}
	a2, a3 := <-second, <-third
	if a2.code == http.StatusConflict {
		a2, a3 = a3, a2
	}
	if a3.err != nil || a3.code != http.StatusConflict || a3.run.Result != "skipped" {
		t.Errorf("one of the run-nows during the run: got %d %q (%v), want 409 skipped", a3.code, a3.run.Result, a3.err)
	}
	if a2.err != nil || a2.code != http.StatusOK || a2.run.Result != "timeout" {
		t.Fatalf("the buffered run-now: got %d %q (%v), want 200 timeout", a2.code, a2.run.Result, a2.err)
	}
	if a2.run.StartedAt.Before(*a1.run.EndedAt) {
		t.Errorf("buffered run started at %s, before the first ended at %s", a2.run.StartedAt, a1.run.EndedAt)
	}
	t.Logf("%s: buffered run started %s after the first ended", c.name, a2.run.StartedAt.Sub(*a1.run.EndedAt))
}

func testReplaceRunNow(t *testing.T, c *cluster) {
	first := runNowAsync(c.w(0), "now_replace")
	waitRunning(t, c.w(0), "now_replace")
	asked := time.Now()
	second := runNowAsync(c.w(1), "now_replace")
	a1 := <-first
	took := time.Since(asked)
	if a1.err != nil || a1.code != http.StatusOK || a1.run.Result != "cancelled" || !strings.Contains(a1.run.Error, "replaced") {
		t.Fatalf("replaced run-now: got %d %q %q (%v), want 200 cancelled, replaced", a1.code, a1.run.Result, a1.run.Error, a1.err)
	}
	a2 := <-second
	if a2.err != nil || a2.code != http.StatusOK || a2.run.Result != "timeout" {
		t.Fatalf("replacing run-now: got %d %q (%v), want 200 timeout", a2.code, a2.run.Result, a2.err)
	}
	if a2.run.StartedAt.Before(*a1.run.EndedAt) {
		t.Errorf("replacing run started at %s, before the replaced one ended at %s", a2.run.StartedAt, a1.run.EndedAt)
	}
	t.Logf("%s: replaced run ended %s after the replacing request", c.name, took.Round(time.Millisecond))
}

// waitRows polls until the job has n runs for which count is true.
func (c *cluster) waitRows(t *testing.T, job string, n int, count func([]runRow) int) (rows []runRow, skipped int) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		rows, skipped = c.runRows(t, job)
		if count(rows) >= n {
			return rows, skipped
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d runs of the kind wanted after a minute, want %d", job, count(rows), n)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func testBufferOneTicks(t *testing.T, c *cluster) {
	buf, skipped := c.waitRows(t, "tick_buffer", 4, func(rows []runRow) int { return len(rows) })
	noOverlap(t, "tick_buffer", buf)
	onceEach(t, "tick_buffer", buf)
	buffered := 0
	for i := 1; i < len(buf); i++ {
		if buf[i].result != "timeout" {
			t.Errorf("tick_buffer: run of tick %s: got %s, want timeout (nothing cancels it)", buf[i].scheduled.Format(time.TimeOnly), buf[i].result)
		}
		if buf[i].scheduled.Before(buf[i-1].ended) && buf[i].started.Sub(buf[i-1].ended) < 750*time.Millisecond {
			buffered++
		}
	}
	if buffered < 2 || skipped == 0 {
		t.Errorf("tick_buffer: got %d runs of a tick that came during the run before, started as it ended, and %d skipped ticks; want ≥ 2 and ≥ 1", buffered, skipped)
	}
	t.Logf("%s: tick_buffer %d runs, %d of them of a tick buffered during the run before; %d ticks skipped", c.name, len(buf), buffered, skipped)
}

func testReplaceTicks(t *testing.T, c *cluster) {
	rep, _ := c.waitRows(t, "tick_replace", 4, cancelled)
	noOverlap(t, "tick_replace", rep)
	onceEach(t, "tick_replace", rep)
	for _, r := range rep {
		if r.result == "cancelled" && !strings.Contains(r.err, "replaced") {
			t.Errorf("tick_replace: cancelled run of tick %s: error %q does not say it was replaced", r.scheduled.Format(time.TimeOnly), r.err)
		}
	}
	t.Logf("%s: tick_replace %d runs, %d cancelled by the next tick", c.name, len(rep), cancelled(rep))
}

func cancelled(rows []runRow) int {
	n := 0
	for _, r := range rows {
		if r.result == "cancelled" {
			n++
		}
	}
	return n
}

// onceEach fails the test when a tick has more than one run.
func onceEach(t *testing.T, job string, rows []runRow) {
	t.Helper()
	seen := make(map[time.Time]bool)
	for _, r := range rows {
		if seen[r.scheduled.UTC()] {
			t.Errorf("%s: tick %s ran more than once", job, r.scheduled.Format(time.TimeOnly))
		}
		seen[r.scheduled.UTC()] = true
	}
}

// backfillAnswer is the answer to a backfill.
type backfillAnswer struct {
	code int
	res  web.BackfillResult
	body map[string]string // the error body
	err  error
}

func backfill(w *workertest.Worker, job string, body map[string]any) backfillAnswer {
	var a backfillAnswer
	var raw json.RawMessage
	a.code, a.err = postJSON(w, "/api/v1/jobs/"+job+"/backfill", body, &raw)
	if a.err == nil && a.code == http.StatusOK {
		a.err = json.Unmarshal(raw, &a.res)
	} else if a.err == nil {
		a.err = json.Unmarshal(raw, &a.body)
	}
	return a
}

// Ensure a backfill runs each tick of a range that has no success row once,
// with its own scheduled_at, and reports what it ran and left alone: a dry
// run lists the ticks and runs nothing; a range too large is refused with
// a 400 naming the bound; on PostgreSQL two backfills of the same range
// sent at once to two replicas still run each tick once.
func TestBackfill(t *testing.T) {
	t.Parallel()
	jobs := func(postgres bool) string {
		body := "INSERT INTO fill_log (n) VALUES (1)"
		if postgres { // long enough for the two backfills to meet
			body = "INSERT INTO fill_log (n) SELECT 1 FROM pg_sleep(0.2)"
		}
		return `
jobs:
  - {name: fill, schedule: "0 0 1 1 *", sql: "` + body + `"}
`
	}
	forEachCluster(t, jobs, "CREATE TABLE fill_log (n integer)", func(t *testing.T, c *cluster) {
		full := map[string]any{"from": "2019-12-31T00:00:00Z", "to": "2025-06-01T00:00:00Z"} // the ticks of 2020 to 2025
		dry := backfill(c.w(0), "fill", map[string]any{"from": full["from"], "to": full["to"], "dry_run": true})
		if dry.err != nil || dry.code != http.StatusOK || dry.res.Counts["would_run"] != 6 || len(dry.res.Ticks) != 6 {
			t.Fatalf("dry run: got %d %v (%v), want 200 and 6 ticks that would run", dry.code, dry.res.Counts, dry.err)
		}
		if n := count(c.db, "SELECT count(*) FROM fill_log"); n != 0 {
			t.Fatalf("bodies run by the dry run: got %d, want 0", n)
		}
		part := backfill(c.w(0), "fill", map[string]any{"from": "2020-06-01T00:00:00Z", "to": "2022-06-01T00:00:00Z"})
		if part.err != nil || part.code != http.StatusOK || part.res.Counts["ran"] != 2 {
			t.Fatalf("backfill of 2021 and 2022: got %d %v (%v), want 200 and 2 ran", part.code, part.res.Counts, part.err)
		}
		// Two backfills of the whole range at once, on two replicas.
		answers := make(chan backfillAnswer, 2)
		for i := 1; i <= 2; i++ {
			go func() { answers <- backfill(c.w(i), "fill", full) }()
		}
		ran := 0
		for range 2 {
			a := <-answers
			if a.err != nil || a.code != http.StatusOK {
				t.Fatalf("concurrent backfill: got %d %v (%v)", a.code, a.body, a.err)
			}
			if a.res.Counts["done"] < 2 {
				t.Errorf("concurrent backfill: got %v, want 2021 and 2022 done at least", a.res.Counts)
			}
			for _, tk := range a.res.Ticks {
				if tk.Status == "ran" && (tk.Run == nil || tk.Run.Result != "success" || !tk.Run.ScheduledAt.Equal(*tk.ScheduledAt)) {
					t.Errorf("tick %s: ran as %+v, want a success with its own scheduled_at", tk.ScheduledAt, tk.Run)
				}
			}
			ran += a.res.Counts["ran"]
			t.Logf("%s: concurrent backfill: %v", c.name, a.res.Counts)
		}
		if ran != 4 {
			t.Errorf("ticks the two concurrent backfills ran: got %d, want 4 (2020, 2023, 2024, 2025), once each", ran)
		}
		if n := count(c.db, "SELECT count(*) FROM fill_log"); n != 6 {
			t.Errorf("bodies run: got %d, want 6, one per tick", n)
		}
		if n := count(c.db, "SELECT count(DISTINCT scheduled_at) FROM job_runs WHERE job = 'fill' AND result = 'success'"); n != 6 {
			t.Errorf("ticks with a success row: got %d, want 6", n)
		}
		big := backfill(c.w(0), "fill", map[string]any{"from": "1000-01-01T00:00:00Z", "to": "2025-06-01T00:00:00Z", "dry_run": true})
		if big.code != http.StatusBadRequest || !strings.Contains(big.body["error"], "more than 1000 ticks") {
			t.Errorf("backfill of 1025 years: got %d %v, want 400 naming the bound of 1000 ticks", big.code, big.body)
		}
		bad := backfill(c.w(0), "fill", map[string]any{"from": "yesterday", "to": "2025-06-01T00:00:00Z"})
		if bad.code != http.StatusBadRequest || !strings.Contains(bad.body["error"], "from: want an RFC 3339 time") {
			t.Errorf("backfill from yesterday: got %d %v, want 400 naming from", bad.code, bad.body)
		}
		if none := backfill(c.w(0), "none", full); none.code != http.StatusNotFound {
			t.Errorf("backfill of an unknown job: got %d %v, want 404", none.code, none.body)
		}
	})
}
