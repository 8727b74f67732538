package reliability_test

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sqlworker/worker/internal/workertest"
)

// Ensure a duration past time.Duration's range is refused naming its limit,
// not as a typo (issue 18: "timeout: 10000000h" said "want a number with a
// unit").
func TestConfig_DurationOverflow(t *testing.T) {
	t.Parallel()
	checkRefused(t, []refusedConfig{
		{"Timeout", "jobs:\n  - {name: a, schedule: \"@hourly\", sql: SELECT 1, timeout: 10000000h}\n",
			`jobs[0].timeout: duration "10000000h" is too long: at most 2562047h47m16.854775807s`},
		{"Every", "jobs:\n  - {name: a, schedule: \"@every 10000000h\", sql: SELECT 1}\n",
			`jobs[0].schedule: invalid schedule "@every 10000000h": @every: interval "10000000h" is too long: at most 2562047h47m16.854775807s`},
	})
}

// Ensure an unknown job's 404 echoes a bounded prefix of its name (issue
// 18: a 900 KB name came back as 900 KB of 404).
func TestAdminAPI_UnknownNameBounded(t *testing.T) {
	t.Parallel()
	w := StartWorker(t, workertest.Options{Config: workertest.BuiltinsOff, Args: []string{"--web.enable-admin-api"}})
	name := strings.Repeat("x", 900<<10)
	c := &http.Client{Timeout: time.Minute}
	resp, err := c.Post(w.URL("/api/v1/jobs/"+name+"/run"), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("status: got %d, want 404", resp.StatusCode)
	}
	if len(body) > 512 {
		t.Errorf("body: got %d bytes, want at most 512", len(body))
	}
	if want := `… (921600 bytes) is not scheduled`; !strings.Contains(string(body), want) {
		t.Errorf("body: got %q, want it to contain %q", body, want)
	}
}

// Ensure run-now holds "one run of a job at a time" across PostgreSQL
// replicas (issue 18: run-now on two replicas at once ran the same job on
// both at the same time). A run-now on r0 runs the job; one on r1 while it
// runs answers 409 with a skipped run, and the job has one success row.
func TestAdminAPI_RunNowAcrossReplicas(t *testing.T) {
	t.Parallel()
	config := `scheduler:
  lease: 2s
builtin:
  heartbeat: {enabled: false}
  history_prune: {enabled: false}
jobs:
  - name: slow
    schedule: "@yearly"
    timeout: 30s
    sql: SELECT pg_sleep(3)
`
	rs := startReplicas(t, 2, config, "", func(_ int, o *workertest.Options) {
		o.Args = append(o.Args, "--web.enable-admin-api")
	})
	c := &http.Client{Timeout: time.Minute}
	first := make(chan int, 1)
	go func() {
		code, err := api(c, rs.ws[0], http.MethodPost, "/api/v1/jobs/slow/run", nil)
		if err != nil {
			t.Error(err)
		}
		first <- code
	}()
	rs.waitDB(t, "r0's run-now running", replicaWait, func() bool {
		return rs.int(t, `SELECT count(*) FROM job_claims WHERE job = 'slow' AND status = 'running' AND owner = 'worker-r0'`) == 1
	})
	var skipped struct {
		Result string `json:"result"`
	}
	code, err := api(c, rs.ws[1], http.MethodPost, "/api/v1/jobs/slow/run", &skipped)
	if err != nil {
		t.Fatal(err)
	}
	if code != http.StatusConflict || skipped.Result != "skipped" {
		t.Errorf("run-now on r1 while r0 runs the job: got %d %q, want 409 skipped", code, skipped.Result)
	}
	if code := <-first; code != http.StatusOK {
		t.Errorf("run-now on r0: got %d, want 200", code)
	}
	if n := rs.int(t, `SELECT count(*) FROM job_runs WHERE job = 'slow' AND result = 'success'`); n != 1 {
		t.Errorf("success rows of slow: got %d, want 1", n)
	}
}

// Ensure a reload that cannot read its file says so in one form, naming
// the flag and the file, whatever the cause (issue 18: a missing file, a
// directory and a symbolic link loop were worded three ways, and only one
// named the flag); that an empty file is refused rather than taken as "no
// jobs" (an editor that truncates and rewrites in place, with a SIGHUP
// between, stopped every job); and that a reload that removes jobs says
// which at WARN.
func TestReload_ReadErrorsAndEmptyFile(t *testing.T) {
	t.Parallel()
	w, path := reloadWorker(t, reloadLight, workertest.Options{Args: []string{"--web.enable-lifecycle"}})
	refused := 0
	for _, c := range []struct {
		name   string
		make   func() error
		reason string
	}{
		{"Missing", func() error { return os.Remove(path) }, "cannot read: no such file or directory"},
		{"Directory", func() error { return os.Mkdir(path, 0o755) }, "cannot read: not a regular file: a directory"},
		{"SymlinkLoop", func() error {
			if err := os.Remove(path); err != nil {
				return err
			}
			return os.Symlink(path, path)
		}, "cannot read: too many levels of symbolic links"},
	} {
		if err := c.make(); err != nil {
			t.Fatal(err)
		}
		refused++
		hup(t, w, `msg="Config reload refused`, refused)
		want := "--config.file " + path + ": " + c.reason
		if line := lastLine(w.Logs(), `msg="Config reload refused`); !strings.Contains(line, want) {
			t.Errorf("%s: the refusal: want %q, got\n%s", c.name, want, line)
		}
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	writeConfig(t, path, "")
	hup(t, w, `msg="Config reload refused`, refused+1)
	if line := lastLine(w.Logs(), `msg="Config reload refused`); !strings.Contains(line, "config file "+path+": is empty: a reload would remove every job") {
		t.Errorf("empty file: want it refused, got\n%s", line)
	}
	w.WaitFor(t, "job a still running after the refused reloads", 30*time.Second, func() bool { return runs(w.Scrape(t), "a", "success") > 0 })
	writeConfig(t, path, workertest.BuiltinsOff+"jobs: []\n")
	hup(t, w, `msg="Config reloaded"`, 1)
	if line := lastLine(w.Logs(), `msg="Config reload removed jobs`); !strings.Contains(line, "level=WARN") || !strings.Contains(line, "removed=[a]") {
		t.Errorf("jobs: [] removes a: want a WARN line naming it, got %q", line)
	}
}

// Ensure a tick that ran twice shows (issue 23: two success rows for one
// (job, scheduled_at) would go unnoticed): a second success row planted by
// hand in job_runs raises worker_job_duplicate_ticks of its job to 1 within
// the duplicate check's interval, with one error line naming the job, on
// SQLite and on PostgreSQL. WorkerJobTickRanTwice fires on that value
// (deploy/prometheus/alerts_test.yml).
func TestDuplicateTicks_Planted(t *testing.T) {
	t.Parallel()
	config := workertest.BuiltinsOff + `history:
  duplicate_check_interval: 1s
jobs:
  - {name: billing, schedule: "@yearly", sql: "SELECT 1"}
  - {name: fine, schedule: "@yearly", sql: "SELECT 1"}
`
	plant := `INSERT INTO job_runs (job, scheduled_at, started_at, ended_at, result, rows_affected)
		VALUES ('billing', %[1]s, %[1]s, %[1]s, 'success', 0), ('billing', %[1]s, %[1]s, %[1]s, 'success', 0),
		       ('fine', %[1]s, %[1]s, %[1]s, 'success', 0)`
	check := func(t *testing.T, w *workertest.Worker) {
		t.Helper()
		w.WaitFor(t, "worker_job_duplicate_ticks{job_name=billing} 1", 30*time.Second, func() bool {
			return workertest.Sum(w.Scrape(t)["worker_job_duplicate_ticks"], map[string]string{"job_name": "billing"}) == 1
		})
		if got := workertest.Sum(w.Scrape(t)["worker_job_duplicate_ticks"], map[string]string{"job_name": "fine"}); got != 0 {
			t.Errorf("worker_job_duplicate_ticks{job_name=fine}: got %v, want 0", got)
		}
		if line := lastLine(w.Logs(), `msg="Ticks ran more than once`); !strings.Contains(line, "job=billing") {
			t.Errorf("log: want an error line naming billing, got %q", line)
		}
	}
	t.Run("SQLite", func(t *testing.T) {
		t.Parallel()
		w := StartWorker(t, workertest.Options{Config: config})
		d := workertest.OpenDB(t, w.DBPath, "_busy_timeout=5000")
		if _, err := d.Exec(fmt.Sprintf(plant, "'2026-01-01T00:00:00.000Z'")); err != nil {
			t.Fatal(err)
		}
		check(t, w)
	})
	// Two replicas, each running every heartbeat tick (one success row per
	// replica per tick): that is no tick run twice, and has no series.
	t.Run("PostgreSQL", func(t *testing.T) {
		t.Parallel()
		pgConfig := strings.Replace(config, "heartbeat: {enabled: false}", `heartbeat: {schedule: "@every 1s"}`, 1)
		rs := startReplicas(t, 2, pgConfig, "")
		rs.waitDB(t, "a heartbeat tick with a row of each replica", replicaWait, func() bool {
			return rs.int(t, `SELECT count(*) FROM (SELECT scheduled_at FROM job_runs WHERE job = 'heartbeat' AND result = 'success'
				GROUP BY 1 HAVING count(*) = 2) d`) > 0
		})
		if _, err := rs.db.Exec(fmt.Sprintf(plant, "'2026-01-01T00:00:00Z'")); err != nil {
			t.Fatal(err)
		}
		for _, w := range rs.ws {
			check(t, w)
			if _, ok := w.Scrape(t)["worker_job_duplicate_ticks"]; ok {
				if got := workertest.Sum(w.Scrape(t)["worker_job_duplicate_ticks"], map[string]string{"job_name": "heartbeat"}); got != 0 {
					t.Errorf("worker_job_duplicate_ticks{job_name=heartbeat}: got %v, want no series", got)
				}
			}
		}
	})
}
