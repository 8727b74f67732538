package main_test

import (
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

// everySecond is a config whose jobs all run every second.
const everySecond = workertest.EverySecond

// openDB opens the worker's database read-only, for checking its tables.
func openDB(tb testing.TB, path string) *sql.DB {
	tb.Helper()
	return workertest.OpenDB(tb, path, "mode=ro")
}
