package reliability_test

import (
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/sqlworker/worker/internal/workertest"
)

// fdLimit is the RLIMIT_NOFILE the worker gets, soft and hard: Go raises the
// soft limit to the hard one at start-up, so both are set.
const fdLimit = 64

// prlimit returns the command prefix that runs the worker under fdLimit
// (util-linux's prlimit, which execs it: the pid stays the worker's).
func prlimit(t *testing.T) []string {
	t.Helper()
	path, err := exec.LookPath("prlimit")
	if err != nil {
		t.Fatalf("prlimit (Debian package util-linux) is needed: %v", err)
	}
	return []string{path, "--nofile=64:64", "--"}
}

// fdConfig runs every built-in job and one SQL job every second.
var fdConfig = workertest.EverySecond

// Ensure the worker runs within RLIMIT_NOFILE 64 and reports it.
func TestFDLimit_Runs(t *testing.T) {
	t.Parallel()
	w := StartWorker(t, workertest.Options{Config: fdConfig, Prefix: prlimit(t)})
	first := w.Scrape(t)
	w.WaitFor(t, "running jobs", 30*time.Second, func() bool {
		return workertest.Sum(w.Scrape(t)["worker_job_runs_total"], map[string]string{"result": "success"}) >=
			workertest.Sum(first["worker_job_runs_total"], map[string]string{"result": "success"})+18
	})
	mfs := w.Scrape(t)
	if got := workertest.Sum(mfs["process_max_fds"], nil); got != fdLimit {
		t.Errorf("process_max_fds: got %v, want %d", got, fdLimit)
	}
	open := workertest.Sum(mfs["process_open_fds"], nil)
	if open >= fdLimit {
		t.Errorf("process_open_fds: got %v, want below %d", open, fdLimit)
	}
	for _, result := range []string{"failure", "panic", "timeout"} {
		if got := workertest.Sum(mfs["worker_job_runs_total"], map[string]string{"result": result}); got != 0 {
			t.Errorf("worker_job_runs_total{result=%q}: got %v, want 0", result, got)
		}
	}
	t.Logf("under RLIMIT_NOFILE %d: process_max_fds %v, process_open_fds %v, %v successful runs",
		fdLimit, workertest.Sum(mfs["process_max_fds"], nil), open, workertest.Sum(mfs["worker_job_runs_total"], map[string]string{"result": "success"}))
	if code, _ := w.Stop(t, 60*time.Second); code != 0 {
		t.Errorf("exit code: got %d, want 0", code)
	}
}

// Ensure that with the FD leak build exhausting RLIMIT_NOFILE 64 the worker
// neither crashes nor stops counting: runs fail with "too many open files",
// are logged and counted, /metrics answers on a connection opened before the
// exhaustion, and a new connection fails without harm to the worker.
func TestFDLimit_Exhausted(t *testing.T) {
	t.Parallel()
	// One kept-alive connection, opened before the limit is reached.
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1, MaxConnsPerHost: 1}}
	t.Cleanup(client.CloseIdleConnections)
	w := StartWorker(t, workertest.Options{Bin: leakBin, Config: fdConfig, Prefix: prlimit(t), Env: []string{"WORKER_LEAK=fd"}, Client: client})
	var failed float64
	took := w.WaitFor(t, "failing runs with too many open files", 60*time.Second, func() bool {
		mfs, err := w.TryScrape()
		if err != nil {
			return false
		}
		failed = workertest.Sum(mfs["worker_job_runs_total"], map[string]string{"result": "failure"})
		return failed >= 5 && strings.Contains(w.Logs(), "too many open files")
	})
	// Every counted failure is logged.
	w.WaitFor(t, "logging every failed run", 5*time.Second, func() bool {
		return float64(strings.Count(w.Logs(), `msg="Job run failed"`)) >= failed
	})
	// The kept connection still gets /metrics: the collectors that need a
	// descriptor report their error and the rest is served.
	metricsCode, body, err := w.Get("/metrics")
	if err != nil || metricsCode != http.StatusOK || !strings.Contains(body, "worker_job_runs_total") {
		t.Errorf("GET /metrics on the kept connection: got %d (%v), want 200 with the job metrics", metricsCode, err)
	}
	// A new connection cannot be accepted while no descriptor is free; it
	// must fail cleanly: an error for the client, nothing for the worker.
	fresh := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, freshErr := fresh.Get(w.URL("/metrics"))
	freshResult := "error: "
	if freshErr == nil {
		freshResult = resp.Status
		resp.Body.Close()
	} else {
		freshResult += freshErr.Error()
	}
	if w.Exited() {
		t.Fatalf("worker exited: %v", w.Err())
	}
	code, took2 := w.Stop(t, 60*time.Second)
	for _, bad := range []string{"panic:", "fatal error:", "goroutine "} {
		if strings.Contains(w.Logs(), bad) {
			t.Errorf("log contains %q", bad)
		}
	}
	t.Logf("FD limit %d exhausted after %s: %v failed runs counted and logged (too many open files); kept connection GET /metrics: %d; new connection: %s; SIGTERM: exit %d in %s",
		fdLimit, took.Round(time.Second), failed, metricsCode, freshResult, code, took2.Round(time.Millisecond))
}
