package reliability_test

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/sqlworker/worker/internal/web"
	"github.com/sqlworker/worker/internal/workertest"
)

// basicAuth adds credentials to every request.
type basicAuth struct {
	user, password string
	next           http.RoundTripper
}

func (b basicAuth) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.SetBasicAuth(b.user, b.password)
	return b.next.RoundTrip(r)
}

// api sends method path with c and decodes the JSON answer into v when
// the status is want; it returns the status.
func api(c *http.Client, w *workertest.Worker, method, path string, v any) (int, error) {
	return apiBody(c, w, method, path, nil, v)
}

// apiBody is api with a request body (nil: none).
func apiBody(c *http.Client, w *workertest.Worker, method, path string, body io.Reader, v any) (int, error) {
	req, err := http.NewRequest(method, w.URL(path), body)
	if err != nil {
		return 0, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, err
	}
	if v != nil && resp.StatusCode < 500 && resp.StatusCode != http.StatusUnauthorized {
		if err := json.Unmarshal(b, v); err != nil {
			return resp.StatusCode, fmt.Errorf("%s %s: %w in %q", method, path, err, b)
		}
	}
	return resp.StatusCode, nil
}

// Ensure --web.enable-admin-api serves the admin API behind the web
// config's TLS and basic auth: 401 without credentials (and no run), the
// job list, a run now recorded in job_runs and worker_job_runs_total, 404
// for unknown and disabled jobs, and 409 with a skipped run while the job
// runs.
func TestAdminAPI_RunNow(t *testing.T) {
	t.Parallel()
	const user, password = "admin", "correct horse battery staple"
	webConfig, pool := mustWebConfig(t, user, password)
	transport := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	t.Cleanup(transport.CloseIdleConnections)
	anonymous := &http.Client{Timeout: time.Minute, Transport: transport}
	client := &http.Client{Timeout: time.Minute, Transport: basicAuth{user, password, transport}}
	// adhoc runs only when asked; slow runs until its timeout.
	config := workertest.BuiltinsOff + `
jobs:
  - name: adhoc
    schedule: "@yearly"
    timeout: 10s
    sql: |
      CREATE TABLE IF NOT EXISTS adhoc (x);
      INSERT INTO adhoc VALUES (1), (2);
  - name: slow
    schedule: "@yearly"
    timeout: 5s
    sql: |
      WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 10000000000)
      SELECT count(*) FROM c;
  - {name: off, schedule: "@hourly", sql: "SELECT 1", enabled: false}
`
	w := StartWorker(t, workertest.Options{Config: config, Client: client, Scheme: "https",
		Args: []string{"--web.config.file", webConfig, "--web.enable-admin-api"}})
	mustAPI := func(t *testing.T, c *http.Client, method, path string, v any) int {
		t.Helper()
		code, err := api(c, w, method, path, v)
		if err != nil {
			t.Fatal(err)
		}
		return code
	}

	t.Run("Auth", func(t *testing.T) {
		for _, tc := range []struct{ method, path string }{{"GET", "/api/v1/jobs"}, {"POST", "/api/v1/jobs/adhoc/run"}} {
			if got, want := mustAPI(t, anonymous, tc.method, tc.path, nil), http.StatusUnauthorized; got != want {
				t.Errorf("%s %s without credentials: got %v, want %v", tc.method, tc.path, got, want)
			}
		}
		if got := runs(w.Scrape(t), "adhoc", "success"); got != 0 {
			t.Errorf("worker_job_runs_total{job_name=adhoc} after an unauthenticated POST: got %v, want 0", got)
		}
	})
	t.Run("List", func(t *testing.T) {
		var list struct{ Jobs []web.JobStatus }
		if got, want := mustAPI(t, client, "GET", "/api/v1/jobs", &list), http.StatusOK; got != want {
			t.Fatalf("GET /api/v1/jobs: got %v, want %v", got, want)
		}
		byName := make(map[string]web.JobStatus)
		for _, j := range list.Jobs {
			byName[j.Name] = j
		}
		if j := byName["adhoc"]; j.Kind != "sql" || j.Schedule != "@yearly" || j.Timeout != "10s" || !j.Enabled || j.NextRun == nil || j.LastRun != nil {
			t.Errorf("job adhoc: got %+v, want sql @yearly 10s enabled, a next run, no last run", j)
		}
		if j := byName["off"]; j.Enabled || j.NextRun != nil {
			t.Errorf("job off: got %+v, want disabled with no next run", j)
		}
		if j, ok := byName["heartbeat"]; !ok || j.Kind != "builtin" || j.Enabled {
			t.Errorf("job heartbeat: got %+v (listed %v), want builtin, disabled", j, ok)
		}
	})
	t.Run("RunNow", func(t *testing.T) {
		var r web.RunRecord
		if got, want := mustAPI(t, client, "POST", "/api/v1/jobs/adhoc/run", &r), http.StatusOK; got != want {
			t.Fatalf("POST /api/v1/jobs/adhoc/run: got %v, want %v", got, want)
		}
		if r.Job != "adhoc" || r.Result != "success" || r.Error != "" || r.StartedAt == nil || r.EndedAt == nil || r.ScheduledAt == nil {
			t.Fatalf("run record: got %+v, want adhoc success with its times", r)
		}
		if got := runs(w.Scrape(t), "adhoc", "success"); got != 1 {
			t.Errorf("worker_job_runs_total{job_name=adhoc,result=success}: got %v, want 1", got)
		}
		d := workertest.OpenDB(t, w.DBPath, "mode=ro")
		var result string
		var rows int64
		w.WaitFor(t, "the run in job_runs", time.Minute, func() bool {
			err := d.QueryRow("SELECT result, rows_affected FROM job_runs WHERE job = 'adhoc'").Scan(&result, &rows)
			return err == nil
		})
		if result != "success" || rows != r.RowsAffected {
			t.Errorf("job_runs row: got %s %d, want success %d", result, rows, r.RowsAffected)
		}
		var list struct{ Jobs []web.JobStatus }
		mustAPI(t, client, "GET", "/api/v1/jobs", &list)
		for _, j := range list.Jobs {
			if j.Name == "adhoc" && (j.LastRun == nil || !j.LastRun.StartedAt.Equal(*r.StartedAt)) {
				t.Errorf("adhoc last_run: got %+v, want the run now's record", j.LastRun)
			}
		}
	})
	t.Run("Unknown", func(t *testing.T) {
		for _, name := range []string{"nope", "off"} {
			if got, want := mustAPI(t, client, "POST", "/api/v1/jobs/"+name+"/run", nil), http.StatusNotFound; got != want {
				t.Errorf("POST /api/v1/jobs/%s/run: got %v, want %v", name, got, want)
			}
		}
	})
	t.Run("AlreadyRunning", func(t *testing.T) {
		type answer struct {
			code int
			run  web.RunRecord
			err  error
		}
		first := make(chan answer, 1)
		go func() {
			var a answer
			a.code, a.err = api(client, w, "POST", "/api/v1/jobs/slow/run", &a.run)
			first <- a
		}()
		w.WaitFor(t, "slow running", time.Minute, func() bool {
			return workertest.Sum(w.Scrape(t)["worker_job_running"], map[string]string{"job_name": "slow"}) == 1
		})
		var skipped web.RunRecord
		if got, want := mustAPI(t, client, "POST", "/api/v1/jobs/slow/run", &skipped), http.StatusConflict; got != want {
			t.Errorf("POST while slow runs: got %v, want %v", got, want)
		}
		if got, want := skipped.Result, "skipped"; got != want {
			t.Errorf("409 record result: got %v, want %v", got, want)
		}
		a := <-first
		if a.err != nil {
			t.Fatal(a.err)
		}
		if a.code != http.StatusOK || a.run.Result != "timeout" {
			t.Errorf("first run: got %d %s, want 200 timeout", a.code, a.run.Result)
		}
		mfs := w.Scrape(t)
		if got := runs(mfs, "slow", "skipped"); got != 1 {
			t.Errorf("worker_job_runs_total{job_name=slow,result=skipped}: got %v, want 1", got)
		}
		if got := runs(mfs, "slow", "timeout"); got != 1 {
			t.Errorf("worker_job_runs_total{job_name=slow,result=timeout}: got %v, want 1", got)
		}
		d := workertest.OpenDB(t, w.DBPath, "mode=ro")
		w.WaitFor(t, "the skipped run in job_runs", time.Minute, func() bool {
			var n int
			err := d.QueryRow("SELECT count(*) FROM job_runs WHERE job = 'slow' AND result = 'skipped'").Scan(&n)
			return err == nil && n == 1
		})
	})
	if code, _ := w.Stop(t, time.Minute); code != 0 {
		t.Errorf("exit code: got %d, want 0", code)
	}
}

// Ensure the admin API is off by default: its paths are not served.
func TestAdminAPI_Disabled(t *testing.T) {
	t.Parallel()
	w := StartWorker(t, workertest.Options{Config: workertest.BuiltinsOff})
	for _, tc := range []struct{ method, path string }{{"GET", "/api/v1/jobs"}, {"POST", "/api/v1/jobs/heartbeat/run"}} {
		code, err := api(w.Client, w, tc.method, tc.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := code, http.StatusNotFound; got != want {
			t.Errorf("%s %s: got %v, want %v", tc.method, tc.path, got, want)
		}
	}
	if code, _ := w.Stop(t, time.Minute); code != 0 {
		t.Errorf("exit code: got %d, want 0", code)
	}
}
