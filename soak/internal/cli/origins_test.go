package cli

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/pprof/profile"
	"github.com/mattn/go-sqlite3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sqlworker/worker/internal/workertest"
	"github.com/sqlworker/worker/soak/internal/origin"
	"github.com/sqlworker/worker/soak/internal/report"
	"github.com/sqlworker/worker/soak/internal/runner"
	"github.com/sqlworker/worker/soak/internal/scrape"
	"github.com/sqlworker/worker/soak/internal/series"
	"github.com/sqlworker/worker/sqlcount"
)

// svcEnv makes this test binary, started by the soak, serve the service
// of TestRun_Origins: "leaky" or "clean". svcDir is where it keeps its
// SQLite database.
const (
	svcEnv = "SOAK_TEST_SERVICE"
	svcDir = "SOAK_TEST_DIR"
)

// The service's three leaks, each in a function of its own, kept reachable
// as PERF-408's global array kept its connections, so that no finalizer
// hides them.
var (
	svcMu      sync.Mutex
	svcKept    []any
	svcForever = make(chan struct{})
)

func svcKeep(v any) {
	svcMu.Lock()
	svcKept = append(svcKept, v)
	svcMu.Unlock()
}

// svcOpenHandle opens a handle per call, as PERF-408's initDb did, and
// keeps it when leaky.
func svcOpenHandle(path string, leaky bool) error {
	db, err := sql.Open("soaktest-sqlite3", path)
	if err != nil {
		return err
	}
	if err := db.Ping(); err != nil {
		return err
	}
	if leaky {
		svcKeep(db)
		return nil
	}
	return db.Close()
}

// svcStartWatcher starts a goroutine per call that, when leaky, never
// returns.
func svcStartWatcher(leaky bool) {
	done := make(chan struct{})
	go func() {
		if leaky {
			<-svcForever
		}
		close(done)
	}()
	if !leaky {
		<-done
	}
}

// svcCacheBlock allocates 64 KiB per call and, when leaky, keeps it.
func svcCacheBlock(leaky bool) {
	b := make([]byte, 64<<10)
	for i := range b {
		b[i] = byte(i)
	}
	if leaky {
		svcKeep(b)
	}
}

// serviceMain is a Go service that wraps go-sqlite3 with sqlcount, serves
// its metrics and net/http/pprof on $SOAK_TEST_ADDR, and calls each of its
// three functions on a ticker until SIGTERM: a handle a second, four
// goroutines a second (more than the handles' one database/sql opener
// goroutine each, so that the goroutines' top site is its own) and 256 KiB
// of heap a second.
func serviceMain() int {
	leaky := os.Getenv(svcEnv) == "leaky"
	// The heap's saw-tooth is the noise its leak is judged against; with
	// GOGC's default it is as high as the live heap, and 256 KiB a second
	// cleared its tolerance by a few MiB only (flaky on a loaded machine).
	debug.SetGCPercent(10)
	path := filepath.Join(os.Getenv(svcDir), "service.db")
	counter := &sqlcount.Counter{}
	sql.Register("soaktest-sqlite3", sqlcount.NewDriver(&sqlite3.SQLiteDriver{}, counter))
	reg := prometheus.NewRegistry()
	reg.MustRegister(sqlcount.NewCollector(counter), collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	srv := &http.Server{Addr: os.Getenv(childAddr), Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.ListenAndServe() }()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			_ = srv.Shutdown(context.Background())
			return 0
		case <-tick.C:
		}
		if n%4 == 0 {
			if err := svcOpenHandle(path, leaky); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
		}
		svcStartWatcher(leaky)
		svcCacheBlock(leaky)
	}
}

// soakService soaks the service for the 75 s with 15 s of warm-up.
func soakService(t *testing.T, mode string) (stdout, stderr, dir string, err error) {
	t.Helper()
	addr := workertest.FreeAddr(t)
	return soak(t, "--duration", "75s", "--warmup", "15s", "--stop-timeout", "5s",
		"--metrics-url", "http://"+addr+"/metrics", "--",
		"env", svcEnv+"="+mode, childAddr+"="+addr, svcDir+"="+t.TempDir(), os.Args[0], "-test.run=^$")
}

// Ensure the soak names where a Go service leaks: a 75 s soak of a service
// that leaks a handle, goroutines and heap, each in a function of its own,
// flags each leak and names each function with its file and line in the
// verdict, summary.txt, report.json and report.html, and keeps the raw
// profiles; the same service without the leaks is steady and names nothing.
func TestRun_Origins(t *testing.T) {
	if testing.Short() {
		t.Skip("two 75 s soaks; `make test` runs them")
	}
	t.Run("Leaky", func(t *testing.T) {
		t.Parallel()
		stdout, stderr, dir, err := soakService(t, "leaky")
		if !errors.Is(err, ErrAlarm) {
			t.Fatalf("got %v, want ErrAlarm\n%s\n%s", err, stdout, stderr)
		}
		last := lastLine(stdout)
		r := readReport(t, dir)
		for _, w := range []struct{ series, profile, fn string }{
			{"worker_db_handles_open", origin.Handles, "svcOpenHandle"},
			{"go_goroutines", origin.Goroutine, "svcStartWatcher"},
			{"go_memstats_heap_inuse_bytes", origin.Heap, "svcCacheBlock"},
		} {
			checkCulprit(t, r, dir, w.series, w.profile, w.fn)
			want := regexp.MustCompile(regexp.QuoteMeta(w.series) + ` rising \+[^;]*/h from cli\.` + w.fn + `(\.func\d+)? \(cli/origins_test\.go:\d+\)`)
			if !want.MatchString(last) {
				t.Errorf("last line %q, want it to match %s", last, want)
			}
		}
		summary := readFile(t, filepath.Join(dir, report.TextFile))
		if !strings.Contains(summary, "origin of go_goroutines: profile goroutine, growth from warm-up") ||
			!strings.Contains(summary, "go tool pprof -base profiles/goroutine.base.pb.gz profiles/goroutine.end.pb.gz") {
			t.Errorf("summary.txt does not list the goroutines' origin:\n%s", summary)
		}
		if page := readFile(t, filepath.Join(dir, report.HTMLFile)); !strings.Contains(page, "Where it leaks") || !strings.Contains(page, "svcCacheBlock") {
			t.Errorf("report.html has no origins section naming svcCacheBlock")
		}
	})
	t.Run("Clean", func(t *testing.T) {
		t.Parallel()
		stdout, stderr, dir, err := soakService(t, "clean")
		if err != nil {
			t.Fatalf("got %v, want a steady verdict\n%s\n%s", err, stdout, stderr)
		}
		if last := lastLine(stdout); !strings.HasPrefix(last, "soak: STEADY") || strings.Contains(last, "svc") {
			t.Errorf("last line %q, want STEADY naming no function", last)
		}
		r := readReport(t, dir)
		if r.Origins == nil || len(r.Origins.Findings) != 0 || r.Origins.Unavailable != "" {
			t.Errorf("origins %+v, want profiles taken and no finding", r.Origins)
		}
		if strings.Contains(readFile(t, filepath.Join(dir, report.TextFile)), "origin of") {
			t.Error("summary.txt lists an origin of a steady service")
		}
	})
}

// checkCulprit checks that the finding of series in r comes from profile,
// names fn as its top site with this file and a line, and that its raw
// profiles are in dir and parse.
func checkCulprit(t *testing.T, r report.Report, dir, series, prof, fn string) {
	t.Helper()
	if !slices.Contains(r.Leaking, series) {
		t.Errorf("leaking %v, want %s among them", r.Leaking, series)
		return
	}
	i := slices.IndexFunc(r.Origins.Findings, func(f origin.Finding) bool { return f.Series == series })
	if i < 0 {
		t.Errorf("no origin of %s in report.json", series)
		return
	}
	f := r.Origins.Findings[i]
	top, ok := f.Top()
	switch {
	case f.Profile != prof:
		t.Errorf("%s: profile %q, want %q", series, f.Profile, prof)
	case !ok:
		t.Errorf("%s: no site (%s)", series, f.Note)
	case !ownSite(top.Function, fn) || filepath.Base(top.File) != "origins_test.go" || top.Line <= 0 || top.Growth <= 0:
		t.Errorf("%s: top site %s %s:%d growth %g, want cli.%s in origins_test.go growing; all: %+v", series, top.Function, top.File, top.Line, top.Growth, fn, f.Sites)
	case f.Measure != "growth" || f.Base != origin.PhaseWarmup:
		t.Errorf("%s: measure %q from %q, want growth from warm-up", series, f.Measure, f.Base)
	}
	if f.BaseFile == "" || f.EndFile == "" {
		t.Errorf("%s: profiles %q and %q, want both kept", series, f.BaseFile, f.EndFile)
		return
	}
	for _, name := range []string{f.BaseFile, f.EndFile} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Errorf("%s: %v", series, err)
			continue
		}
		if _, err := profile.ParseData(b); err != nil {
			t.Errorf("%s: %s: %v", series, name, err)
		}
	}
}

// ownSite reports whether function is fn of this package or a closure in
// it: a leaked goroutine's own function is the closure that it runs.
func ownSite(function, fn string) bool {
	return strings.HasSuffix(function, "/cli."+fn) || strings.Contains(function, "/cli."+fn+".func")
}

// Ensure a leak's alert carries its origin when the verdict names one.
func TestAlerts_Origin(t *testing.T) {
	cfg := runner.Config{Duration: time.Minute, Interval: time.Second, Warmup: 15 * time.Second, Watch: series.DefaultWatch}
	var scrapes []runner.Scrape
	for i := range 60 {
		vec, err := scrape.Parse(strings.NewReader(genericGo(true)(i)))
		if err != nil {
			t.Fatal(err)
		}
		scrapes = append(scrapes, runner.Scrape{T: float64(i), Vector: vec})
	}
	res := runner.New(cfg).Replay(scrapes)
	res.Culprits = map[string]string{"process_open_fds": "from app.initDb (app/db.go:42)"}
	as := alerts(res, "run-1", "http://127.0.0.1:1/metrics")
	if len(as) != 1 || as[0].Annotations["origin"] != "from app.initDb (app/db.go:42)" {
		t.Fatalf("alerts %+v, want one for process_open_fds with its origin", as)
	}
}
