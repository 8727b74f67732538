package reliability_test

import (
	"io"
	"net/http"
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
