// Package workertest starts the built worker binary for end-to-end tests:
// it builds it, starts it on a free loopback port, waits until it is ready,
// scrapes it and stops it. Only tests import it.
package workertest

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// SQLite3LDFlags is the linker flag of the Makefile's build that keeps
// go-sqlite3 from registering "sqlite3", so that the worker registers its
// counted driver under that name (internal/db SQLite3Name).
const SQLite3LDFlags = "-X github.com/mattn/go-sqlite3.driverName="

// Build builds ./cmd/worker of the module at root into dst, with the given
// build tags ("" for none) and the Makefile's SQLite3LDFlags.
func Build(root, dst, tags string) error {
	out, err := GoBuild(root, nil, "build", "-tags", tags, "-ldflags", SQLite3LDFlags, "-o", dst, "./cmd/worker")
	if err != nil {
		return fmt.Errorf("cannot build worker (tags %q): %w\n%s", tags, err, out)
	}
	return nil
}

// GoBuild runs `go args...` in dir with env added to the environment and
// returns its combined output. It runs it once more when the compiler could
// not read a dependency's export data from the build cache ("could not
// import bytes (open : no such file or directory)"), a transient error seen
// while other go commands shared the cache; the output is then the second
// run's.
func GoBuild(dir string, env []string, args ...string) (string, error) {
	var out []byte
	var err error
	for attempt := 0; attempt < 2; attempt++ {
		cmd := exec.Command("go", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), env...)
		out, err = cmd.CombinedOutput()
		if err == nil || !bytes.Contains(out, []byte("could not import")) {
			break
		}
	}
	return string(out), err
}

// ModuleRoot returns the directory of go.mod above the working directory.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory")
		}
		dir = parent
	}
}

// Options say how to start a worker.
type Options struct {
	Bin    string // the worker binary, from Build
	Config string // YAML written to worker.yml and passed with --config.file
	DBPath string // default worker.db in a new temporary directory
	// DBURL, when set, is passed as --db.url, and no --db.path: the worker
	// runs on PostgreSQL there.
	DBURL  string
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
	*Process
	Addr   string // host:port it listens on
	DBPath string
	Client *http.Client
	Scheme string
}

var (
	listeningRE = regexp.MustCompile(`msg="Listening on" address=(\S+)`)
	// startedRE is the line Start waits for: ready, or started with a
	// PostgreSQL server that is not up yet (ready once it is).
	startedRE = regexp.MustCompile(`msg="Worker ready"|msg="Worker started; not ready until the database opens"`)
)

// Start starts the binary and waits until it listens and says it is
// ready (or started, waiting for its PostgreSQL server). It is killed at cleanup if still running.
func Start(tb testing.TB, o Options) *Worker {
	tb.Helper()
	if o.Bin == "" {
		tb.Fatal("workertest: Options.Bin is empty")
	}
	if o.DBPath == "" && o.DBURL == "" {
		o.DBPath = filepath.Join(tb.TempDir(), "worker.db")
	}
	if o.Client == nil {
		o.Client = &http.Client{Timeout: 10 * time.Second}
	}
	if o.Scheme == "" {
		o.Scheme = "http"
	}
	w := &Worker{DBPath: o.DBPath, Client: o.Client, Scheme: o.Scheme}
	if o.LogLevel == "" {
		o.LogLevel = "debug"
	}
	argv := append(append(slices.Clone(o.Prefix), o.Bin), o.argv(tb, w.DBPath)...)
	pr, pw := io.Pipe()
	w.Process = startProcess(tb, "worker", o.Env, argv, pw)
	addr, ready := watchStart(pr)
	timeout := time.After(30 * time.Second)
	for addr != nil || ready != nil {
		select {
		case w.Addr = <-addr:
			addr = nil
		case <-ready:
			ready = nil
		case <-w.done:
			tb.Fatalf("worker exited while starting: %v\n%s", w.err, w.Logs())
		case <-timeout:
			tb.Fatalf("worker not ready within 30 s\n%s", w.Logs())
		}
	}
	return w
}

// argv returns the worker's arguments: the database, a free port, the log
// level, the config written to a file, then o.Args.
func (o Options) argv(tb testing.TB, dbPath string) []string {
	argv := []string{"--db.path", dbPath, "--web.listen-address", "127.0.0.1:0", "--log.level", o.LogLevel}
	if o.DBURL != "" {
		argv[0], argv[1] = "--db.url", o.DBURL
	}
	if o.Config != "" {
		path := filepath.Join(tb.TempDir(), "worker.yml")
		if err := os.WriteFile(path, []byte(o.Config), 0o644); err != nil {
			tb.Fatal(err)
		}
		argv = append(argv, "--config.file", path)
	}
	return append(argv, o.Args...)
}

// watchStart reads the worker's log from pr until it ends: addr gets the
// address of its "Listening on" line, and ready is closed at its
// startedRE line.
func watchStart(pr io.Reader) (addr <-chan string, ready <-chan struct{}) {
	addrc, readyc := make(chan string, 1), make(chan struct{})
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		sentAddr, sentReady := false, false
		for sc.Scan() {
			line := sc.Text()
			if m := listeningRE.FindStringSubmatch(line); m != nil && !sentAddr {
				addrc <- m[1]
				sentAddr = true
			}
			if startedRE.MatchString(line) && !sentReady {
				close(readyc)
				sentReady = true
			}
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	return addrc, readyc
}

// URL returns the worker's URL for path.
func (w *Worker) URL(path string) string { return w.Scheme + "://" + w.Addr + path }

// Status returns the status of GET path, or 0 when the request failed.
func (w *Worker) Status(path string) int {
	code, _, err := w.Get(path)
	if err != nil {
		return 0
	}
	return code
}

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

// Sum adds the values of a family's series whose labels include match.
func Sum(mf *dto.MetricFamily, match map[string]string) float64 {
	var total float64
	for _, m := range mf.GetMetric() {
		if !Matches(m, match) {
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

// Matches reports whether m has every label of match.
func Matches(m *dto.Metric, match map[string]string) bool {
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
