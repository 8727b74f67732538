package worker_test

import (
	"context"
	"database/sql"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sqlworker/worker/internal/db"
	"github.com/sqlworker/worker/internal/workertest"
	"github.com/sqlworker/worker/sqlcount"
)

// perRunHandles are the handles openPerRun leaked, closed by the test.
var perRunHandles struct {
	sync.Mutex
	path string
	dbs  []*sql.DB
}

// openPerRun is a Go job that does what the README says never to do: it
// opens the database with a plain sql.Open("sqlite3", ...) on every run and
// keeps the handle (PERF-408).
func openPerRun(ctx context.Context, _ *sql.DB) (int64, error) {
	perRunHandles.Lock()
	defer perRunHandles.Unlock()
	h, err := sql.Open("sqlite3", "file:"+perRunHandles.path)
	if err != nil {
		return 0, err
	}
	perRunHandles.dbs = append(perRunHandles.dbs, h)
	return 0, h.PingContext(ctx)
}

// sqlite3LDFlagsEnv marks the run of TestWorker_JobOpensSQLite3 that the
// test itself starts with the Makefile's linker flags.
const sqlite3LDFlagsEnv = "WORKER_TEST_SQLITE3_LDFLAGS"

// Ensure a Go job's plain sql.Open("sqlite3", ...) per run shows in the
// metrics: in worker_db_process_handles_open in any build, and, in a build
// with the Makefile's linker flags (go-sqlite3's "sqlite3" left to the
// worker), in worker_db_handles_open too, with the job's function as the
// handles' origin. A plain go test build registers go-sqlite3's own
// "sqlite3", so the test runs itself once more with the flags.
func TestWorker_JobOpensSQLite3(t *testing.T) {
	t.Run("Counted", func(t *testing.T) {
		if !db.SQLite3Counted() {
			if os.Getenv(sqlite3LDFlagsEnv) != "" {
				t.Fatalf("built with -ldflags %q, \"sqlite3\" is still go-sqlite3's own", workertest.SQLite3LDFlags)
			}
			cmd := exec.Command("go", "test", "-count=1", "-ldflags", workertest.SQLite3LDFlags,
				"-run", "^TestWorker_JobOpensSQLite3$/^Counted$", "-v", ".")
			cmd.Env = append(os.Environ(), sqlite3LDFlagsEnv+"=1")
			out, err := cmd.CombinedOutput()
			if err != nil || !strings.Contains(string(out), "--- PASS: TestWorker_JobOpensSQLite3/Counted") {
				t.Fatalf("go test -ldflags %q: %v\n%s", workertest.SQLite3LDFlags, err, out)
			}
			return
		}
		testJobOpensSQLite3(t, true)
	})
	t.Run("ProcessHandles", func(t *testing.T) { testJobOpensSQLite3(t, db.SQLite3Counted()) })
}

// testJobOpensSQLite3 runs openPerRun three times and checks that the
// metrics rose by two between the first run and the third; counted: that
// worker_db_handles_open did as well, and that the job is the handles'
// origin.
func testJobOpensSQLite3(t *testing.T, counted bool) {
	cfg := MustParseConfig(t, "")
	w, reg := MustNewWorker(t, cfg)
	perRunHandles.Lock()
	perRunHandles.path = cfg.DBPath
	perRunHandles.Unlock()
	defer func() {
		perRunHandles.Lock()
		defer perRunHandles.Unlock()
		for _, h := range perRunHandles.dbs {
			h.Close()
		}
		perRunHandles.dbs = nil
	}()
	ran := make(chan struct{}, 1)
	err := w.Register("open_per_run", "* * * * * *", func(ctx context.Context, d *sql.DB) (int64, error) {
		defer func() { ran <- struct{}{} }()
		return openPerRun(ctx, d)
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	wait(t, ran, "first run")
	first := processHandles(t, reg, 0)
	handles := sum(t, reg, "worker_db_handles_open", nil)
	wait(t, ran, "second run")
	wait(t, ran, "third run")
	if got, want := processHandles(t, reg, first+2), first+2; got != want {
		t.Errorf("worker_db_process_handles_open after the third run: got %v, want %v (the first's + 2)", got, want)
	}
	if !counted {
		return
	}
	if got, want := sum(t, reg, "worker_db_handles_open", nil), handles+2; got != want {
		t.Errorf("worker_db_handles_open after the third run: got %v, want %v (the first's + 2)", got, want)
	}
	for _, o := range sqlcount.Group(sqlcount.OpenObjects()) {
		if o.Kind == sqlcount.Handles && strings.HasSuffix(o.Function, "worker_test.openPerRun") && o.Count >= 3 &&
			strings.HasSuffix(o.File, "/jobopen_test.go") {
			return
		}
	}
	t.Errorf("origins: got %v, want ≥ 3 handles from worker_test.openPerRun (jobopen_test.go)", sqlcount.Group(sqlcount.OpenObjects()))
}

// processHandles returns worker_db_process_handles_open once it is at
// least want: a handle's opener goroutine counts from its first run.
func processHandles(t *testing.T, reg prometheus.Gatherer, want float64) float64 {
	t.Helper()
	for i := 0; ; i++ {
		got := sum(t, reg, "worker_db_process_handles_open", nil)
		if got >= want || i == 1000 {
			return got
		}
		runtime.Gosched()
	}
}
