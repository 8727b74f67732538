package main_test

import (
	"testing"
	"time"

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
