package cli

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sqlworker/worker/soak/internal/detect"
	"github.com/sqlworker/worker/soak/internal/invariant"
	"github.com/sqlworker/worker/soak/internal/report"
	"github.com/sqlworker/worker/soak/internal/runner"
	"github.com/sqlworker/worker/soak/internal/series"
)

func TestMain(m *testing.M) {
	// The command-mode tests start this test binary as the target.
	if os.Getenv(childEnv) != "" {
		os.Exit(childMain())
	}
	if os.Getenv(svcEnv) != "" {
		os.Exit(serviceMain())
	}
	goleak.VerifyTestMain(m)
}

// target serves exposition text that changes with every scrape: render
// gets the number of scrapes so far.
type fakeTarget struct {
	mu     sync.Mutex
	n      int
	render func(n int) string
}

func (t *fakeTarget) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	t.mu.Lock()
	n := t.n
	t.n++
	t.mu.Unlock()
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	fmt.Fprint(w, t.render(n))
}

// serve starts an httptest server for render.
func serve(t *testing.T, render func(n int) string) string {
	t.Helper()
	srv := httptest.NewServer(&fakeTarget{render: render})
	t.Cleanup(srv.Close)
	return srv.URL + "/metrics"
}

// genericGo renders a plain Go service: process_* and go_* only. fds grow
// by one per scrape when leak is set.
func genericGo(leak bool) func(n int) string {
	return func(n int) string {
		fds := 10 + n%3
		if leak {
			fds = 10 + n
		}
		return fmt.Sprintf(`# HELP process_open_fds Number of open file descriptors.
# TYPE process_open_fds gauge
process_open_fds %d
# TYPE go_goroutines gauge
go_goroutines %d
# TYPE process_resident_memory_bytes gauge
process_resident_memory_bytes %d
# TYPE go_memstats_heap_inuse_bytes gauge
go_memstats_heap_inuse_bytes %d
# TYPE http_requests_total counter
http_requests_total{code="200"} %d
`, fds, 8+n%4, 20<<20+(n%9)<<16, 4<<20+(n%13)<<15, n)
	}
}

// worker renders the worker's metrics; handles is worker_db_handles_open
// and runs says whether jobs run.
func worker(handles int, runs bool) func(n int) string {
	return func(n int) string {
		jobs := 0
		if runs {
			jobs = n
		}
		return genericGo(false)(n) + fmt.Sprintf(`# TYPE worker_open_fds gauge
worker_open_fds{type="file"} 1
worker_open_fds{type="socket"} %d
worker_open_fds{type="sqlite"} 3
# TYPE go_sql_max_open_connections gauge
go_sql_max_open_connections{db_name="main"} 4
# TYPE go_sql_open_connections gauge
go_sql_open_connections{db_name="main"} %d
# TYPE go_sql_in_use_connections gauge
go_sql_in_use_connections{db_name="main"} %d
# TYPE go_sql_wait_count_total counter
go_sql_wait_count_total{db_name="main"} 0
# TYPE worker_db_handles_open gauge
worker_db_handles_open %d
# TYPE worker_db_connections_open gauge
worker_db_connections_open %d
# TYPE worker_db_statements_open gauge
worker_db_statements_open 0
# TYPE worker_db_init_calls_total counter
worker_db_init_calls_total{result="opened"} 1
worker_db_init_calls_total{result="reused"} %d
# TYPE worker_job_duplicate_ticks gauge
worker_job_duplicate_ticks{job_name="heartbeat"} 0
# TYPE worker_job_runs_total counter
worker_job_runs_total{job_name="heartbeat",result="success"} %d
worker_job_runs_total{job_name="heartbeat",result="failure"} 0
`, 2+n%2, 1+n%2, n%2, handles, 1+n%2, n, jobs)
	}
}

// quick are flags for a soak of about 2 s: 40 judged samples.
var quick = []string{"--duration", "2s", "--interval", "40ms", "--warmup", "400ms"}

// soak runs the command line and returns its error, stdout, stderr and
// report dir.
func soak(t *testing.T, args ...string) (stdout, stderr, dir string, err error) {
	t.Helper()
	dir = filepath.Join(t.TempDir(), "report")
	if keep := os.Getenv("SOAK_TEST_KEEP"); keep != "" {
		dir = filepath.Join(keep, t.Name())
	}
	var out, errOut bytes.Buffer
	err = Run(context.Background(), append([]string{"--report-dir", dir}, args...), &out, &errOut)
	return out.String(), errOut.String(), dir, err
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

func readReport(t *testing.T, dir string) report.Report {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, report.JSONFile))
	if err != nil {
		t.Fatal(err)
	}
	var r report.Report
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("report.json: %v", err)
	}
	return r
}

// Ensure a steady generic Go service passes, with the worker's own series
// listed as missing, and a full report.
func TestRun_SteadyTarget(t *testing.T) {
	stdout, stderr, dir, err := soak(t, append(quick, "--target", serve(t, genericGo(false)))...)
	if err != nil {
		t.Fatalf("got %v, want nil\n%s", err, stderr)
	}
	if got, want := lastLine(stdout), "soak: STEADY"; !strings.HasPrefix(got, want) {
		t.Fatalf("last line %q, want prefix %q", got, want)
	}
	if !strings.Contains(stderr, "soak: warm-up") || !strings.Contains(stderr, "left · fds") {
		t.Fatalf("no progress line in stderr:\n%s", stderr)
	}
	r := readReport(t, dir)
	if got, want := r.Status, runner.StatusSteady; got != want {
		t.Fatalf("status %q, want %q", got, want)
	}
	if got, want := len(r.Series), 4; got != want {
		t.Fatalf("%d series, want %d", got, want)
	}
	if got, want := strings.Join(r.Missing, ","), "worker_open_fds,go_sql_open_connections,go_sql_in_use_connections,worker_db_connections_open,worker_db_handles_open,worker_db_statements_open"; got != want {
		t.Fatalf("missing %q, want %q", got, want)
	}
	for _, inv := range r.Invariants {
		if inv.Applies {
			t.Fatalf("invariant %s applies to a generic target, want not", inv.Rule)
		}
	}

	f, err := os.Open(filepath.Join(dir, report.CSVFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatalf("samples.csv: %v", err)
	}
	if got, want := rows[0][2], "process_open_fds"; got != want {
		t.Fatalf("csv column 2 %q, want %q", got, want)
	}
	if got, want := len(rows)-1, r.Scrapes; got != want {
		t.Fatalf("csv has %d rows, want %d", got, want)
	}

	page, err := os.ReadFile(filepath.Join(dir, report.HTMLFile))
	if err != nil {
		t.Fatal(err)
	}
	html := string(page)
	if got, want := strings.Count(html, "<article class=\"card"), 4; got != want {
		t.Fatalf("%d charts, want %d", got, want)
	}
	for _, bad := range []string{"<script", "src=", "<link", "@import", "url("} {
		if strings.Contains(html, bad) {
			t.Fatalf("report.html contains %q, want a self-contained page", bad)
		}
	}
}

// Ensure a growing series is named with its slope, and exit maps to 1.
func TestRun_LeakingTarget(t *testing.T) {
	stdout, stderr, dir, err := soak(t, append(quick, "--target", serve(t, genericGo(true)))...)
	if !errors.Is(err, ErrAlarm) {
		t.Fatalf("got %v, want ErrAlarm\n%s", err, stderr)
	}
	last := lastLine(stdout)
	if !strings.HasPrefix(last, "soak: LEAK") || !strings.Contains(last, "process_open_fds rising +") || !strings.Contains(last, "/h") {
		t.Fatalf("last line %q, want LEAK naming process_open_fds and its slope per hour", last)
	}
	r := readReport(t, dir)
	if got, want := strings.Join(r.Leaking, ","), "process_open_fds"; got != want {
		t.Fatalf("leaking %q, want %q", got, want)
	}
	if !strings.Contains(readFile(t, filepath.Join(dir, report.HTMLFile)), `class="card leak"`) {
		t.Fatal("report.html does not mark the leaking series")
	}
}

// Ensure --tolerance reaches the verdict: the same growth that is a leak
// with the default tolerance is steady under a wide one.
func TestRun_Tolerance(t *testing.T) {
	stdout, stderr, dir, err := soak(t, append(quick, "--target", serve(t, genericGo(true)),
		"--tolerance", "process_open_fds=1000000", "--tolerance", "process_resident_memory_bytes=40%")...)
	if err != nil {
		t.Fatalf("got %v, want a steady verdict\n%s\n%s", err, stdout, stderr)
	}
	if last := lastLine(stdout); !strings.HasPrefix(last, "soak: STEADY") {
		t.Fatalf("last line %q, want STEADY", last)
	}
	o, err := parseArgs([]string{"--target", "http://127.0.0.1:1/", "--tolerance", "go_goroutines=20", "--tolerance", "process_resident_memory_bytes=40%"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range o.specs() {
		switch s.Name {
		case "go_goroutines":
			if !s.Fixed || s.Tolerance != 20 || !strings.Contains(s.Why, "--tolerance") {
				t.Errorf("go_goroutines: got fixed %v tolerance %v (%s), want a fixed 20 from --tolerance", s.Fixed, s.Tolerance, s.Why)
			}
		case "process_resident_memory_bytes":
			if !s.Fixed || s.Tolerance != 0.4 {
				t.Errorf("process_resident_memory_bytes: got fixed %v tolerance %v, want a fixed 0.4", s.Fixed, s.Tolerance)
			}
		case "process_open_fds":
			if s.Fixed {
				t.Errorf("process_open_fds: got fixed %v, want false: judged by its noise", s.Fixed)
			}
		}
	}
	r := readReport(t, dir)
	for _, s := range r.Series {
		if s.Key == "process_open_fds" && s.Verdict.AllowedFrom != "fixed" {
			t.Errorf("process_open_fds: allowed_from %q, want fixed", s.Verdict.AllowedFrom)
		}
	}
}

// nonGo renders what a service instrumented with prom-client or the Python
// client exposes of the watched series: process_open_fds and
// process_resident_memory_bytes only. fds grow by one per scrape when leak
// is set.
func nonGo(leak bool) func(n int) string {
	return func(n int) string {
		fds := 30 + n%2
		if leak {
			fds = 30 + n
		}
		return fmt.Sprintf(`# HELP process_open_fds Number of open file descriptors.
# TYPE process_open_fds gauge
process_open_fds %d
# HELP process_resident_memory_bytes Resident memory size in bytes.
# TYPE process_resident_memory_bytes gauge
process_resident_memory_bytes %d
# TYPE nodejs_eventloop_lag_seconds gauge
nodejs_eventloop_lag_seconds 0.001
# TYPE http_requests_total counter
http_requests_total{code="200"} %d
`, fds, 60<<20+(n%7)<<16, n)
	}
}

// Ensure a non-Go target exposing only the standard process metrics is
// soaked and judged on what it exposes: no error for the missing go_* and
// worker_* series, every invariant not applicable, a leak of its FDs named.
func TestRun_NonGoTarget(t *testing.T) {
	t.Run("Steady", func(t *testing.T) {
		stdout, stderr, dir, err := soak(t, append(quick, "--target", serve(t, nonGo(false)))...)
		if err != nil {
			t.Fatalf("got %v, want nil\n%s", err, stderr)
		}
		if got, want := lastLine(stdout), "soak: STEADY: no leak in 2 series"; !strings.HasPrefix(got, want) {
			t.Fatalf("last line %q, want prefix %q", got, want)
		}
		r := readReport(t, dir)
		var keys []string
		for _, s := range r.Series {
			keys = append(keys, s.Key)
			if got, want := s.Verdict.Outcome, detect.Steady; got != want {
				t.Errorf("%s: got %v, want %v (%s)", s.Key, got, want, s.Verdict.Reason)
			}
		}
		if got, want := strings.Join(keys, ","), "process_open_fds,process_resident_memory_bytes"; got != want {
			t.Fatalf("series %q, want %q", got, want)
		}
		if got, want := len(r.Missing), len(series.DefaultWatch)-2; got != want {
			t.Fatalf("%d missing (%v), want %d", got, r.Missing, want)
		}
		for _, inv := range r.Invariants {
			if inv.Applies || inv.Broken {
				t.Fatalf("invariant %s: applies=%v broken=%v, want not applicable", inv.Rule, inv.Applies, inv.Broken)
			}
		}
	})
	t.Run("Leak", func(t *testing.T) {
		stdout, stderr, dir, err := soak(t, append(quick, "--target", serve(t, nonGo(true)))...)
		if !errors.Is(err, ErrAlarm) {
			t.Fatalf("got %v, want ErrAlarm\n%s", err, stderr)
		}
		if last := lastLine(stdout); !strings.Contains(last, "process_open_fds rising +") {
			t.Fatalf("last line %q, want process_open_fds named", last)
		}
		if got, want := strings.Join(readReport(t, dir).Named, ","), "process_open_fds"; got != want {
			t.Fatalf("named %q, want %q", got, want)
		}
	})
}

// Ensure the per-series table (noise, tolerance, growth, verdict) comes
// before the verdict on stdout and is written as summary.txt, with one line
// saying why no origin is given: the target serves no pprof.
func TestRun_Summary(t *testing.T) {
	stdout, _, dir, err := soak(t, append(quick, "--target", serve(t, genericGo(true)))...)
	if !errors.Is(err, ErrAlarm) {
		t.Fatalf("got %v, want ErrAlarm", err)
	}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if got, want := len(lines), 1+4+1+1; got != want {
		t.Fatalf("got %d lines on stdout, want %d (header, 4 series, no origin, verdict):\n%s", got, want, stdout)
	}
	if got, want := lines[5], "/debug/pprof/goroutine: not a pprof profile"; !strings.HasPrefix(got, "soak: no origin given: http://") || !strings.Contains(got, want) {
		t.Errorf("line %q, want no origin given, naming %s", got, want)
	}
	for _, want := range []string{"noise (p-p)", "tolerance", "growth", "verdict"} {
		if !strings.Contains(lines[0], want) {
			t.Fatalf("header %q lacks %q", lines[0], want)
		}
	}
	if !strings.HasPrefix(lines[1], "soak: process_open_fds") || !strings.Contains(lines[1], " leak ") {
		t.Fatalf("line %q, want process_open_fds judged a leak", lines[1])
	}
	txt := readFile(t, filepath.Join(dir, report.TextFile))
	if !strings.Contains(txt, "process_open_fds") || !strings.HasSuffix(strings.TrimSpace(txt), strings.TrimPrefix(lastLine(stdout), "soak: ")) {
		t.Fatalf("summary.txt %q, want the table and the verdict", txt)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Ensure --fail-fast stops a long soak once the leak is certain.
func TestRun_FailFast(t *testing.T) {
	_, stderr, dir, err := soak(t, "--duration", "1h", "--interval", "20ms", "--warmup", "200ms", "--fail-fast",
		"--target", serve(t, genericGo(true)))
	if !errors.Is(err, ErrAlarm) {
		t.Fatalf("got %v, want ErrAlarm\n%s", err, stderr)
	}
	r := readReport(t, dir)
	if !r.StoppedEarly {
		t.Fatal("stopped_early=false, want true")
	}
	if got, want := r.Leaking, []string{"process_open_fds"}; len(got) != 1 || got[0] != want[0] {
		t.Fatalf("leaking %v, want %v", got, want)
	}
}

// Ensure the worker's invariants are judged when its metrics are there.
func TestRun_Invariants(t *testing.T) {
	t.Run("Held", func(t *testing.T) {
		stdout, stderr, dir, err := soak(t, append(quick, "--target", serve(t, worker(1, true)))...)
		if err != nil {
			t.Fatalf("got %v, want nil\n%s\n%s", err, stdout, stderr)
		}
		r := readReport(t, dir)
		if got, want := len(r.Missing), 0; got != want {
			t.Fatalf("missing %v, want none", r.Missing)
		}
		for _, inv := range r.Invariants {
			if inv.Rule == invariant.RuleServerConn {
				continue // PostgreSQL's; TestRun_Replicas
			}
			if !inv.Applies || inv.Broken {
				t.Fatalf("invariant %s: applies=%v broken=%v, want true false", inv.Rule, inv.Applies, inv.Broken)
			}
		}
	})
	t.Run("SecondHandle", func(t *testing.T) {
		stdout, _, dir, err := soak(t, append(quick, "--fail-fast", "--target", serve(t, worker(2, true)))...)
		if !errors.Is(err, ErrAlarm) {
			t.Fatalf("got %v, want ErrAlarm", err)
		}
		if !strings.Contains(lastLine(stdout), "broken one_handle") {
			t.Fatalf("last line %q, want it to name one_handle", lastLine(stdout))
		}
		if got, want := strings.Join(readReport(t, dir).Named, ","), "worker_db_handles_open"; got != want {
			t.Fatalf("named %q, want %q", got, want)
		}
	})
	t.Run("NoJobRan", func(t *testing.T) {
		stdout, _, _, err := soak(t, append(quick, "--target", serve(t, worker(1, false)))...)
		if !errors.Is(err, ErrAlarm) {
			t.Fatalf("got %v, want ErrAlarm", err)
		}
		if !strings.Contains(lastLine(stdout), "broken jobs_ran") {
			t.Fatalf("last line %q, want it to name jobs_ran", lastLine(stdout))
		}
	})
}

// Ensure targets that cannot be soaked give an error that is not the alarm.
func TestRun_CouldNotSoak(t *testing.T) {
	t.Run("NoWatchedSeries", func(t *testing.T) {
		url := serve(t, func(int) string { return "# TYPE foo gauge\nfoo 1\n" })
		_, _, _, err := soak(t, append(quick, "--target", url)...)
		if err == nil || errors.Is(err, ErrAlarm) || !strings.Contains(err.Error(), "none of the watched series") {
			t.Fatalf("got %v, want a could-not-soak error about watched series", err)
		}
	})
	t.Run("TargetDown", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		url := "http://" + l.Addr().String() + "/metrics"
		l.Close()
		_, _, _, err = soak(t, append(quick, "--target", url)...)
		if err == nil || errors.Is(err, ErrAlarm) || !strings.Contains(err.Error(), "scrapes failed") {
			t.Fatalf("got %v, want a could-not-soak error about scrapes", err)
		}
	})
	// A target that answers nothing, a status or too much (issue 18): the
	// error says what failed, no series is called "not exposed", and the
	// soak ends on time.
	for _, tc := range []struct {
		name    string
		handler http.HandlerFunc
		want    string
	}{
		{"Hangs", func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }, "context deadline exceeded"},
		{"Status", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "busy", http.StatusServiceUnavailable) }, "unexpected HTTP status 503 Service Unavailable"},
		{"TooLarge", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", strconv.Itoa(64<<20))
			line := []byte(strings.Repeat("# padding\n", 1<<10))
			for r.Context().Err() == nil {
				if _, err := w.Write(line); err != nil {
					return
				}
			}
		}, "body longer than 32 MiB, the limit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(tc.handler)
			t.Cleanup(srv.Close)
			start := time.Now()
			_, stderr, _, err := soak(t, "--duration", "2s", "--interval", "200ms", "--warmup", "400ms", "--target", srv.URL+"/metrics")
			took := time.Since(start)
			if err == nil || !strings.Contains(err.Error(), "scrapes failed") || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error: got %v, want scrapes failed, naming %q", err, tc.want)
			}
			if strings.Contains(stderr, "not exposed") {
				t.Errorf("stderr: got %q, want no series called not exposed", stderr)
			}
			if took > 4*time.Second {
				t.Errorf("soak of 2s took %s: want it to end on time", took.Round(time.Millisecond))
			}
		})
	}
	t.Run("Garbage", func(t *testing.T) {
		url := serve(t, func(int) string { return "this is { not exposition\n" })
		_, _, _, err := soak(t, append(quick, "--target", url)...)
		if err == nil || errors.Is(err, ErrAlarm) {
			t.Fatalf("got %v, want a could-not-soak error", err)
		}
	})
}

// Ensure bad flags give one line naming the flag.
func TestRun_BadFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--duration", "abc", "--target", "http://127.0.0.1:1/"}, "--duration"},
		{[]string{"--interval", "0s", "--target", "http://127.0.0.1:1/"}, "--interval"},
		{[]string{"--warmup", "20m", "--target", "http://127.0.0.1:1/"}, "--warmup"},
		{[]string{"--target", "127.0.0.1:1"}, "--target"},
		{[]string{"--alertmanager.url", "nope", "--target", "http://127.0.0.1:1/"}, "--alertmanager.url"},
		{[]string{"--bogus"}, "--bogus"},
		{[]string{}, "--target"},
		{[]string{"--target", "http://127.0.0.1:1/", "--", "true"}, "--target"},
		{[]string{"--tolerance", "go_goroutines=20%", "--target", "http://127.0.0.1:1/"}, "--tolerance go_goroutines=20%: a count series takes a number"},
		{[]string{"--tolerance", "process_resident_memory_bytes=5", "--target", "http://127.0.0.1:1/"}, "--tolerance process_resident_memory_bytes=5: a memory series takes a percentage"},
		{[]string{"--tolerance", "go_goroutines=-1", "--target", "http://127.0.0.1:1/"}, "--tolerance go_goroutines=-1: want a number"},
		{[]string{"--tolerance", "nope_total=3", "--target", "http://127.0.0.1:1/"}, "--tolerance nope_total: nope_total is not watched"},
		{[]string{"--tolerance", "go_goroutines", "--target", "http://127.0.0.1:1/"}, "--tolerance"},
		{[]string{"--replicas", "0", "--", "true"}, "--replicas must be between 1 and 16, got 0"},
		{[]string{"--replicas", "2", "--target", "http://127.0.0.1:1/"}, "--replicas needs a COMMAND"},
		{[]string{"--replicas", "2", "--metrics-url", "http://127.0.0.1/metrics", "--", "true"}, "--metrics-url: \"http://127.0.0.1/metrics\" has no port"},
		{[]string{"--replicas", "3", "--metrics-url", "http://127.0.0.1:65534/metrics", "--", "true"}, "--metrics-url: port 65536 of replica 3 is out of range"},
		{[]string{"--postgres", "--postgres.url", "postgres://u@h/db", "--", "true"}, "--postgres and --postgres.url exclude each other"},
		{[]string{"--postgres", "--target", "http://127.0.0.1:1/"}, "--postgres starts a server for a COMMAND"},
		{[]string{"--postgres.url", "host=/tmp", "--", "true"}, "--postgres.url: want a postgres:// URL"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := Run(context.Background(), tc.args, &stdout, &stderr)
			if !errors.Is(err, ErrUsage) {
				t.Fatalf("got %v, want ErrUsage", err)
			}
			if msg := err.Error(); !strings.Contains(msg, tc.want) || strings.Contains(msg, "\n") {
				t.Fatalf("got %q, want one line naming %s", msg, tc.want)
			}
		})
	}
}

// Ensure --help prints usage and succeeds.
func TestRun_Help(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if err := Run(context.Background(), []string{"--help"}, &stdout, &stderr); err != nil {
		t.Fatalf("got %v, want nil", err)
	}
	if !strings.Contains(stdout.String(), "fail-fast") {
		t.Fatalf("usage does not list --fail-fast:\n%s", stdout.String())
	}
}

// postedAlert is the part of an Alertmanager API v2 alert the test reads.
type postedAlert struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	StartsAt    string            `json:"startsAt"`
}

// Ensure a leak is posted to --alertmanager.url with its series, slope and
// run id (the real Alertmanager is tested in internal/alert).
func TestRun_Alertmanager(t *testing.T) {
	var (
		mu     sync.Mutex
		posted []postedAlert
	)
	am := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/api/v2/alerts" {
			http.Error(w, "unexpected "+r.Method+" "+r.URL.Path, http.StatusNotFound)
			return
		}
		var body []postedAlert
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		posted = append(posted, body...)
		mu.Unlock()
	}))
	defer am.Close()

	_, stderr, _, err := soak(t, append(quick, "--run-id", "run-42", "--alertmanager.url", am.URL,
		"--target", serve(t, genericGo(true)))...)
	if !errors.Is(err, ErrAlarm) {
		t.Fatalf("got %v, want ErrAlarm\n%s", err, stderr)
	}
	mu.Lock()
	defer mu.Unlock()
	if got, want := len(posted), 1; got != want {
		t.Fatalf("%d alerts posted, want %d\n%s", got, want, stderr)
	}
	a := posted[0]
	for k, want := range map[string]string{"alertname": "SoakLeakDetected", "series": "process_open_fds", "run_id": "run-42"} {
		if got := a.Labels[k]; got != want {
			t.Fatalf("label %s=%q, want %q", k, got, want)
		}
	}
	if got := a.Annotations["slope_per_hour"]; !strings.HasPrefix(got, "+") || a.StartsAt == "" {
		t.Fatalf("annotation slope_per_hour=%q, want a positive slope", got)
	}
}
