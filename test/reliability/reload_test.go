package reliability_test

import (
	"crypto/tls"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/sqlworker/worker/internal/jobhistory"
	"github.com/sqlworker/worker/internal/workertest"
)

// The configs a reload test swaps: before, jobs a, b and slow, each every
// second, slow's runs going on until their 6 s timeout, long enough for one
// to be in flight at the reload (the others wait for its write lock, under
// a busy_timeout longer than it); after, a with another schedule and SQL,
// b removed, c added, slow quick with another timeout, and a busy_timeout
// that needs a restart.
var (
	reloadBefore = `database:
  busy_timeout: 30s
` + workertest.BuiltinsOff + `
jobs:
  - {name: a, schedule: "* * * * * *", sql: "CREATE TABLE IF NOT EXISTS a_v (v); INSERT INTO a_v VALUES (1)"}
  - {name: b, schedule: "* * * * * *", sql: "CREATE TABLE IF NOT EXISTS b_v (v); INSERT INTO b_v VALUES (1)"}
  - name: slow
    schedule: "* * * * * *"
    timeout: 6s
    sql: |
      WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 10000000000)
      SELECT count(*) FROM c;
`
	reloadAfter = `database:
  busy_timeout: 9s
` + workertest.BuiltinsOff + `
jobs:
  - {name: a, schedule: "*/2 * * * * *", sql: "CREATE TABLE IF NOT EXISTS a_v (v); INSERT INTO a_v VALUES (2)"}
  - {name: c, schedule: "* * * * * *", sql: "CREATE TABLE IF NOT EXISTS c_v (v); INSERT INTO c_v VALUES (1)"}
  - {name: slow, schedule: "* * * * * *", timeout: 20s, sql: "CREATE TABLE IF NOT EXISTS slow_v (v); INSERT INTO slow_v VALUES (2)"}
`
	// reloadLight is a config with one quick job.
	reloadLight = workertest.BuiltinsOff + `
jobs:
  - {name: a, schedule: "* * * * * *", sql: "SELECT 1"}
`
	// reloadBad has a misspelt key; --config.check names it.
	reloadBad = workertest.BuiltinsOff + `
jobs:
  - {name: a, schedul: "* * * * * *", sql: "SELECT 1"}
`
)

// reloadWorker writes config to a file of its own and starts the worker
// on it, with args; it returns the worker and the file.
func reloadWorker(t *testing.T, config string, o workertest.Options) (*workertest.Worker, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "worker.yml")
	writeConfig(t, path, config)
	o.Args = append(o.Args, "--config.file", path)
	return StartWorker(t, o), path
}

// writeConfig replaces the file at path with config, in one rename, so a
// reload never reads half a file.
func writeConfig(t *testing.T, path, config string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// gaugeOf returns the value of a family with one series, 0 when absent.
func gaugeOf(mfs map[string]*dto.MetricFamily, name string) float64 {
	return workertest.Sum(mfs[name], nil)
}

// logLines returns the number of lines of the worker's log holding s.
func logLines(w *workertest.Worker, s string) int { return strings.Count(w.Logs(), s) }

// hup sends SIGHUP and waits for the reload's log line, reloaded or
// refused, the n-th of its kind.
func hup(t *testing.T, w *workertest.Worker, msg string, n int) {
	t.Helper()
	if err := w.Cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	w.WaitFor(t, "the reload's log line "+msg, 30*time.Second, func() bool { return logLines(w, msg) >= n })
}

// Ensure SIGHUP reloads the config file of the built worker: a removed job
// stops running and its series go, an added one runs, a changed one runs
// its new SQL on its new schedule, a run in flight finishes under its old
// timeout, recorded once and never beside a run of the new settings; the
// database is not reopened, and a setting that needs a restart is named.
// A bad config is refused with one log line naming the field as
// --config.check does, the old jobs keep running, and the next good reload
// succeeds again; the reload metrics say each outcome.
func TestReload_SIGHUP(t *testing.T) {
	t.Parallel()
	w, path := reloadWorker(t, reloadBefore, workertest.Options{})
	d := workertest.OpenDB(t, w.DBPath, "mode=ro")
	count := func(q string) int {
		t.Helper()
		var n int
		if err := d.QueryRow(q).Scan(&n); err != nil && !strings.Contains(err.Error(), "no such table") {
			t.Fatal(err)
		}
		return n
	}
	w.WaitFor(t, "a and b run while slow runs", 30*time.Second, func() bool {
		mfs := w.Scrape(t)
		return runs(mfs, "a", "success") > 0 && runs(mfs, "b", "success") > 0 &&
			workertest.Sum(mfs["worker_job_running"], map[string]string{"job_name": "slow"}) == 1
	})
	mfs := w.Scrape(t)
	if got, want := gaugeOf(mfs, "worker_config_last_reload_successful"), 1.0; got != want {
		t.Fatalf("last_reload_successful at start: got %v, want %v", got, want)
	}
	startTS := gaugeOf(mfs, "worker_config_last_reload_success_timestamp_seconds")

	writeConfig(t, path, reloadAfter)
	sent := jobhistory.FormatTime(time.Now())
	hup(t, w, `msg="Config reloaded"`, 1)
	reloaded := jobhistory.FormatTime(time.Now())

	w.WaitFor(t, "c run twice, a run its new SQL, slow run its new SQL", 30*time.Second, func() bool {
		return count("SELECT count(*) FROM c_v") >= 2 && count("SELECT count(*) FROM a_v WHERE v = 2") >= 1 &&
			count("SELECT count(*) FROM slow_v") >= 1
	})
	if n := count("SELECT count(*) FROM job_runs WHERE job = 'b' AND scheduled_at > '" + reloaded + "'"); n != 0 {
		t.Errorf("runs of removed b scheduled after the reload: got %d, want 0", n)
	}
	mfs = w.Scrape(t)
	if got := workertest.Sum(mfs["worker_job_runs_total"], map[string]string{"job_name": "b"}); got != 0 {
		t.Errorf("worker_job_runs_total{job_name=b} after b was removed: got %v, want no series", got)
	}
	if got, want := workertest.Sum(mfs["worker_job_interval_seconds"], map[string]string{"job_name": "a"}), 2.0; got != want {
		t.Errorf("worker_job_interval_seconds{job_name=a}: got %v, want %v (its new schedule)", got, want)
	}
	if got, want := gaugeOf(mfs, "worker_config_last_reload_successful"), 1.0; got != want {
		t.Errorf("last_reload_successful: got %v, want %v", got, want)
	}
	if got := gaugeOf(mfs, "worker_config_last_reload_success_timestamp_seconds"); got <= startTS {
		t.Errorf("last_reload_success_timestamp_seconds: got %v, want > %v (the start)", got, startTS)
	}
	if got, want := workertest.Sum(mfs["worker_db_init_calls_total"], map[string]string{"result": "opened"}), 1.0; got != want {
		t.Errorf("worker_db_init_calls_total{opened}: got %v, want %v", got, want)
	}
	if got, want := logLines(w, `settings=[database.busy_timeout]`), 1; got != want {
		t.Errorf("log lines naming the setting that needs a restart: got %d, want %d\n%s", got, want, w.Logs())
	}

	// The run of slow going at the reload: recorded once, under its old
	// 6 s timeout; no run of slow overlaps another.
	if got, want := count("SELECT count(*) FROM job_runs WHERE job = 'slow' AND started_at < '"+sent+"' AND ended_at > '"+reloaded+
		"' AND result = 'timeout' AND error LIKE 'timeout after 6s%'"), 1; got != want {
		t.Errorf("runs of slow going across the reload, ended by their old 6s timeout: got %d, want %d", got, want)
	}
	rows, err := d.Query("SELECT started_at, ended_at FROM job_runs WHERE job = 'slow' AND result != 'skipped' ORDER BY started_at")
	if err != nil {
		t.Fatal(err)
	}
	var prevEnd string
	for rows.Next() {
		var start, end string
		if err := rows.Scan(&start, &end); err != nil {
			t.Fatal(err)
		}
		if start < prevEnd {
			t.Errorf("run of slow started at %s, before the previous one ended at %s", start, prevEnd)
		}
		prevEnd = end
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	rows.Close()

	// A bad config: refused, named as --config.check names it.
	writeConfig(t, path, reloadBad)
	out, err := exec.Command(workerBin, "--config.file", path, "--config.check").CombinedOutput()
	checkErr := strings.TrimPrefix(strings.TrimSpace(string(out)), "worker: ")
	if err == nil || !strings.Contains(checkErr, "schedul") {
		t.Fatalf("--config.check of the bad config: got %v, %q, want a refusal naming schedul", err, checkErr)
	}
	hup(t, w, `msg="Config reload refused`, 1)
	if got, want := logLines(w, "jobs[0].schedul"), 1; got != want {
		t.Errorf("log lines naming the field: got %d, want %d\n%s", got, want, w.Logs())
	}
	var refused string
	for _, l := range strings.Split(w.Logs(), "\n") {
		if strings.Contains(l, "Config reload refused") {
			refused = l
		}
	}
	if !strings.Contains(strings.ReplaceAll(refused, `\"`, `"`), checkErr) {
		t.Errorf("refusal: got %q, want the error of --config.check, %q", refused, checkErr)
	}
	c := count("SELECT count(*) FROM c_v")
	w.WaitFor(t, "c still running after the refused reload", 30*time.Second, func() bool {
		return count("SELECT count(*) FROM c_v") > c
	})
	mfs = w.Scrape(t)
	if got, want := gaugeOf(mfs, "worker_config_last_reload_successful"), 0.0; got != want {
		t.Errorf("last_reload_successful after a refused reload: got %v, want %v", got, want)
	}

	writeConfig(t, path, reloadAfter)
	hup(t, w, `msg="Config reloaded"`, 2)
	mfs = w.Scrape(t)
	if got, want := gaugeOf(mfs, "worker_config_last_reload_successful"), 1.0; got != want {
		t.Errorf("last_reload_successful after the next good reload: got %v, want %v", got, want)
	}
	if got, want := workertest.Sum(mfs["worker_db_init_calls_total"], map[string]string{"result": "opened"}), 1.0; got != want {
		t.Errorf("worker_db_init_calls_total{opened}: got %v, want %v", got, want)
	}
	if code, _ := w.Stop(t, 30*time.Second); code != 0 {
		t.Fatalf("exit code: got %d, want 0\n%s", code, w.Logs())
	}
}

// Ensure /-/reload is served only with --web.enable-lifecycle, and then
// behind the web config's TLS and basic auth: 401 without credentials
// (nothing reloaded), 200 for POST and PUT, 500 with the field's error for
// a bad config, which leaves worker_config_last_reload_successful 0.
func TestReload_Lifecycle(t *testing.T) {
	t.Parallel()
	t.Run("Disabled", func(t *testing.T) {
		t.Parallel()
		w, _ := reloadWorker(t, reloadLight, workertest.Options{})
		for _, method := range []string{"POST", "PUT"} {
			if got, want := mustDo(t, w.Client, method, w.URL("/-/reload")), http.StatusNotFound; got != want {
				t.Errorf("%s /-/reload without --web.enable-lifecycle: got %v, want %v", method, got, want)
			}
		}
	})
	t.Run("Enabled", func(t *testing.T) {
		t.Parallel()
		const user, password = "admin", "correct horse battery staple"
		webConfig, pool := mustWebConfig(t, user, password)
		transport := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
		t.Cleanup(transport.CloseIdleConnections)
		anonymous := &http.Client{Timeout: time.Minute, Transport: transport}
		client := &http.Client{Timeout: time.Minute, Transport: basicAuth{user, password, transport}}
		w, path := reloadWorker(t, reloadLight, workertest.Options{Client: client, Scheme: "https",
			Args: []string{"--web.config.file", webConfig, "--web.enable-lifecycle"}})

		writeConfig(t, path, reloadAfter)
		// The reload's timestamp is set before /-/reload answers.
		loaded := func() float64 {
			return gaugeOf(w.Scrape(t), "worker_config_last_reload_success_timestamp_seconds")
		}
		last := loaded()
		if got, want := mustDo(t, anonymous, "POST", w.URL("/-/reload")), http.StatusUnauthorized; got != want {
			t.Fatalf("POST /-/reload without credentials: got %v, want %v", got, want)
		}
		if got := loaded(); got != last {
			t.Fatalf("last_reload_success_timestamp_seconds after an unauthenticated POST: got %v, want %v (no reload)", got, last)
		}
		for _, method := range []string{"POST", "PUT"} {
			if got, want := mustDo(t, client, method, w.URL("/-/reload")), http.StatusOK; got != want {
				t.Fatalf("%s /-/reload: got %v, want %v", method, got, want)
			}
			got := loaded()
			if got <= last {
				t.Fatalf("last_reload_success_timestamp_seconds after %s: got %v, want > %v", method, got, last)
			}
			last = got
		}
		w.WaitFor(t, "c run after /-/reload", 30*time.Second, func() bool { return runs(w.Scrape(t), "c", "success") > 0 })

		writeConfig(t, path, reloadBad)
		req, err := http.NewRequest("POST", w.URL("/-/reload"), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := readAll(resp)
		if resp.StatusCode != http.StatusInternalServerError || !strings.Contains(body, "failed to reload config: ") || !strings.Contains(body, "schedul") {
			t.Fatalf("POST /-/reload of a bad config: got %d %q, want 500 naming the field", resp.StatusCode, body)
		}
		if got, want := gaugeOf(w.Scrape(t), "worker_config_last_reload_successful"), 0.0; got != want {
			t.Fatalf("last_reload_successful: got %v, want %v", got, want)
		}
	})
}

// mustDo sends an empty method request to url and returns the status.
func mustDo(t *testing.T, c *http.Client, method, url string) int {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// readAll reads and closes a response's body.
func readAll(resp *http.Response) (string, error) {
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}
