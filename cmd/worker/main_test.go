package main_test

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

// workerBin is the worker built once for the package's tests.
var workerBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "worker-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	workerBin = filepath.Join(dir, "worker")
	build := exec.Command("go", "build", "-o", workerBin, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "cannot build worker:", err)
		os.Exit(1)
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

// Worker is a running worker binary.
type Worker struct {
	Cmd    *exec.Cmd
	Addr   string // host:port it listens on
	DBPath string
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

// MustStartWorker starts the binary with config (YAML, may be empty) and
// waits until /readyz answers 200. It is killed at cleanup if still running.
func MustStartWorker(tb testing.TB, config string, args ...string) *Worker {
	tb.Helper()
	dir := tb.TempDir()
	w := &Worker{DBPath: filepath.Join(dir, "worker.db"), stderr: &syncBuffer{}, done: make(chan struct{})}
	argv := []string{"--db.path", w.DBPath, "--web.listen-address", "127.0.0.1:0", "--log.level", "debug"}
	if config != "" {
		path := filepath.Join(dir, "worker.yml")
		if err := os.WriteFile(path, []byte(config), 0o644); err != nil {
			tb.Fatal(err)
		}
		argv = append(argv, "--config.file", path)
	}
	w.Cmd = exec.Command(workerBin, append(argv, args...)...)
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
			tb.Logf("worker stderr:\n%s", w.stderr.String())
		}
	})
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if m := listeningRE.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case addr <- m[1]:
				default:
				}
			}
		}
	}()
	select {
	case w.Addr = <-addr:
	case <-w.done:
		tb.Fatalf("worker exited before listening: %v\n%s", w.err, w.stderr.String())
	case <-time.After(30 * time.Second):
		tb.Fatalf("worker did not listen within 30 s\n%s", w.stderr.String())
	}
	w.waitFor(tb, "ready", func() bool { return w.status("/readyz") == http.StatusOK })
	return w
}

// waitFor polls cond until it holds, for at most 30 s.
func (w *Worker) waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("worker not %s within 30 s\n%s", what, w.stderr.String())
		}
		select {
		case <-w.done:
			tb.Fatalf("worker exited while waiting for %s: %v\n%s", what, w.err, w.stderr.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (w *Worker) status(path string) int {
	resp, err := http.Get("http://" + w.Addr + path)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// Scrape returns the worker's metric families.
func (w *Worker) Scrape(tb testing.TB) map[string]*dto.MetricFamily {
	tb.Helper()
	resp, err := http.Get("http://" + w.Addr + "/metrics")
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return mfs
}

// Stop sends SIGTERM and returns the exit code.
func (w *Worker) Stop(tb testing.TB) int {
	tb.Helper()
	if err := w.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		tb.Fatal(err)
	}
	select {
	case <-w.done:
	case <-time.After(60 * time.Second):
		tb.Fatalf("worker did not exit within 60 s of SIGTERM\n%s", w.stderr.String())
	}
	return w.Cmd.ProcessState.ExitCode()
}

// sum adds the values of a family's series whose labels include match.
func sum(mf *dto.MetricFamily, match map[string]string) float64 {
	var total float64
	for _, m := range mf.GetMetric() {
		ok := true
		for k, v := range match {
			found := false
			for _, l := range m.GetLabel() {
				if l.GetName() == k && l.GetValue() == v {
					found = true
				}
			}
			ok = ok && found
		}
		if !ok {
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

// openDB opens the worker's database read-only, for checking its tables.
func openDB(tb testing.TB, path string) *sql.DB {
	tb.Helper()
	d, err := sql.Open("sqlite3", "file:"+path+"?mode=ro")
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

// everySecond is a config whose jobs all run every second.
const everySecond = `
builtin:
  heartbeat: {schedule: "@every 1s"}
  wal_checkpoint: {schedule: "@every 1s"}
  optimize: {schedule: "@every 1s"}
  quick_check: {schedule: "@every 1s"}
  history_prune: {schedule: "@every 1s"}
jobs:
  - name: rollup
    schedule: "* * * * * *"
    timeout: 10s
    sql: |
      CREATE TABLE IF NOT EXISTS events (x);
      INSERT INTO events VALUES (1), (2);
      DELETE FROM events;
`
