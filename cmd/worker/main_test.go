package main_test

import (
	"context"
	"database/sql"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"

	"github.com/sqlworker/worker/internal/workertest"
)

// workerBin is the worker built once for the package's tests.
var workerBin string

func TestMain(m *testing.M) {
	workertest.RunMain(m, workertest.Binary{Path: &workerBin})
}

// MustStartWorker starts the binary with config (YAML, may be empty) on a
// database in a new temporary directory, and waits until it is ready.
func MustStartWorker(tb testing.TB, config string, args ...string) *workertest.Worker {
	tb.Helper()
	return workertest.Start(tb, workertest.Options{Bin: workerBin, Config: config, Args: args})
}

// waitLimit bounds every wait on the worker in this package.
const waitLimit = 30 * time.Second

var sum = workertest.Sum

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
