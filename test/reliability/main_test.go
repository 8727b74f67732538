// Package reliability_test runs the built worker through its bad days:
// database faults, SIGKILL mid-write, a job that ignores its context, a low
// FD limit, an authenticated TLS endpoint and, behind the load build tag,
// sustained load. See docs/reliability.md.
package reliability_test

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.uber.org/goleak"
)

// The worker built once for the package: clean, and with -tags leak.
var workerBin, leakBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "worker-reliability-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	workerBin = filepath.Join(dir, "worker")
	leakBin = filepath.Join(dir, "worker-leak")
	for _, b := range []struct{ out, tags string }{{workerBin, ""}, {leakBin, "leak"}} {
		build := exec.Command("go", "build", "-tags", b.tags, "-o", b.out, "../../cmd/worker")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "cannot build worker:", err)
			os.RemoveAll(dir)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// Options say how to start a worker.
type Options struct {
	Bin    string   // default workerBin
	Config string   // YAML written to worker.yml and passed with --config.file
	DBPath string   // default worker.db in a new temporary directory
	Args   []string // more flags
	Env    []string // more environment
	Prefix []string // a command that execs the worker, such as prlimit
	// LogLevel is --log.level; default debug, so every run is in the log.
	LogLevel string
	Client   *http.Client
	Scheme   string // http or https
}

// Worker is a running worker binary.
type Worker struct {
	Cmd    *exec.Cmd
	Addr   string // host:port it listens on
	DBPath string
	Client *http.Client
	Scheme string
	stderr *syncBuffer
	done   chan struct{}
	err    error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var listeningRE = regexp.MustCompile(`msg="Listening on" address=(\S+)`)

// StartWorker starts the binary and waits until it listens and says it is
// ready. It is killed at cleanup if still running.
func StartWorker(tb testing.TB, o Options) *Worker {
	tb.Helper()
	if o.Bin == "" {
		o.Bin = workerBin
	}
	if o.DBPath == "" {
		o.DBPath = filepath.Join(tb.TempDir(), "worker.db")
	}
	if o.Client == nil {
		o.Client = &http.Client{Timeout: 10 * time.Second}
	}
	if o.Scheme == "" {
		o.Scheme = "http"
	}
	w := &Worker{DBPath: o.DBPath, Client: o.Client, Scheme: o.Scheme, stderr: &syncBuffer{}, done: make(chan struct{})}
	if o.LogLevel == "" {
		o.LogLevel = "debug"
	}
	argv := []string{"--db.path", w.DBPath, "--web.listen-address", "127.0.0.1:0", "--log.level", o.LogLevel}
	if o.Config != "" {
		path := filepath.Join(tb.TempDir(), "worker.yml")
		if err := os.WriteFile(path, []byte(o.Config), 0o644); err != nil {
			tb.Fatal(err)
		}
		argv = append(argv, "--config.file", path)
	}
	argv = append(append(append(o.Prefix, o.Bin), argv...), o.Args...)
	w.Cmd = exec.Command(argv[0], argv[1:]...)
	w.Cmd.Env = append(os.Environ(), o.Env...)
	pr, pw := io.Pipe()
	w.Cmd.Stderr = io.MultiWriter(w.stderr, pw)
	if err := w.Cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	go func() {
		w.err = w.Cmd.Wait()
		pw.Close()
		close(w.done)
	}()
	tb.Cleanup(func() {
		w.Cmd.Process.Kill()
		<-w.done
		if tb.Failed() {
			tb.Logf("worker stderr (last 8 KiB):\n%s", tail(w.stderr.String(), 8<<10))
		}
	})
	addr, ready := make(chan string, 1), make(chan struct{})
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		sentAddr, sentReady := false, false
		for sc.Scan() {
			line := sc.Text()
			if m := listeningRE.FindStringSubmatch(line); m != nil && !sentAddr {
				addr <- m[1]
				sentAddr = true
			}
			if strings.Contains(line, `msg="Worker ready"`) && !sentReady {
				close(ready)
				sentReady = true
			}
		}
		io.Copy(io.Discard, pr)
	}()
	timeout := time.After(30 * time.Second)
	for _, wait := range []func() bool{
		func() bool {
			select {
			case w.Addr = <-addr:
				return true
			default:
				return false
			}
		},
		func() bool {
			select {
			case <-ready:
				return true
			default:
				return false
			}
		},
	} {
		for !wait() {
			select {
			case <-w.done:
				tb.Fatalf("worker exited while starting: %v\n%s", w.err, w.stderr.String())
			case <-timeout:
				tb.Fatalf("worker not ready within 30 s\n%s", w.stderr.String())
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	return w
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}

// URL returns the worker's URL for path.
func (w *Worker) URL(path string) string { return w.Scheme + "://" + w.Addr + path }

// Exited reports whether the process has exited.
func (w *Worker) Exited() bool {
	select {
	case <-w.done:
		return true
	default:
		return false
	}
}

// Logs returns what the worker wrote to stderr so far.
func (w *Worker) Logs() string { return w.stderr.String() }

// Get returns the status and body of GET path.
func (w *Worker) Get(path string) (int, string, error) {
	resp, err := w.Client.Get(w.URL(path))
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// WaitFor polls cond every 50 ms until it holds, for at most limit, and
// fails if the worker exits meanwhile. It returns how long it took.
func (w *Worker) WaitFor(tb testing.TB, what string, limit time.Duration, cond func() bool) time.Duration {
	tb.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > limit {
			tb.Fatalf("not %s within %s\n%s", what, limit, tail(w.Logs(), 8<<10))
		}
		select {
		case <-w.done:
			tb.Fatalf("worker exited while waiting for %s: %v\n%s", what, w.err, tail(w.Logs(), 8<<10))
		case <-time.After(50 * time.Millisecond):
		}
	}
	return time.Since(start)
}

// Scrape returns the worker's metric families.
func (w *Worker) Scrape(tb testing.TB) map[string]*dto.MetricFamily {
	tb.Helper()
	mfs, err := w.TryScrape()
	if err != nil {
		tb.Fatal(err)
	}
	return mfs
}

// TryScrape is Scrape returning its error.
func (w *Worker) TryScrape() (map[string]*dto.MetricFamily, error) {
	resp, err := w.Client.Get(w.URL("/metrics"))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	return parser.TextToMetricFamilies(resp.Body)
}

// Stop sends SIGTERM and waits up to limit for the exit; it returns the exit
// code and how long the exit took.
func (w *Worker) Stop(tb testing.TB, limit time.Duration) (int, time.Duration) {
	tb.Helper()
	start := time.Now()
	if err := w.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		tb.Fatal(err)
	}
	select {
	case <-w.done:
	case <-time.After(limit):
		tb.Fatalf("worker did not exit within %s of SIGTERM\n%s", limit, tail(w.Logs(), 8<<10))
	}
	return w.Cmd.ProcessState.ExitCode(), time.Since(start)
}

// Kill sends SIGKILL and waits for the exit.
func (w *Worker) Kill(tb testing.TB) {
	tb.Helper()
	if err := w.Cmd.Process.Signal(syscall.SIGKILL); err != nil {
		tb.Fatal(err)
	}
	<-w.done
}

// sum adds the values of a family's series whose labels include match.
func sum(mf *dto.MetricFamily, match map[string]string) float64 {
	var total float64
	for _, m := range mf.GetMetric() {
		if !matches(m, match) {
			continue
		}
		switch {
		case m.Counter != nil:
			total += m.Counter.GetValue()
		case m.Gauge != nil:
			total += m.Gauge.GetValue()
		case m.Histogram != nil:
			total += float64(m.Histogram.GetSampleCount())
		}
	}
	return total
}

func matches(m *dto.Metric, match map[string]string) bool {
	for k, v := range match {
		found := false
		for _, l := range m.GetLabel() {
			if l.GetName() == k && l.GetValue() == v {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// runs returns worker_job_runs_total{job, result}.
func runs(mfs map[string]*dto.MetricFamily, job, result string) float64 {
	return sum(mfs["worker_job_runs_total"], map[string]string{"job": job, "result": result})
}

// openDB opens a database for the test's own checks, closed at cleanup.
func openDB(tb testing.TB, path string, params string) *sql.DB {
	tb.Helper()
	d, err := sql.Open("sqlite3", "file:"+path+"?"+params)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { d.Close() })
	return d
}

func ctxTimeout(tb testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	tb.Cleanup(cancel)
	return ctx
}

// integrityCheck runs PRAGMA integrity_check and returns its lines.
func integrityCheck(tb testing.TB, d *sql.DB) string {
	tb.Helper()
	rows, err := d.QueryContext(ctxTimeout(tb, time.Minute), "PRAGMA integrity_check")
	if err != nil {
		tb.Fatal(err)
	}
	defer rows.Close()
	var lines []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			tb.Fatal(err)
		}
		lines = append(lines, s)
	}
	if err := rows.Err(); err != nil {
		tb.Fatal(err)
	}
	return strings.Join(lines, "; ")
}
