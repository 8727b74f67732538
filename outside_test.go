package worker_test

import (
	"os"
	"strings"
	"testing"

	"github.com/sqlworker/worker/internal/outside"
)

// Ensure a module outside this repository can embed the worker: Example
// (example_test.go), copied into such a module, registers a Go job, runs
// the worker for three runs against a SQLite file in a temporary directory,
// and finds each run in job_runs and in worker_job_runs_total.
// internal/outside runs the package's other examples there too.
func TestWorker_Outside(t *testing.T) {
	runOutside(t, "example_test.go", "^Example$", "Example")
}

// Ensure a module outside this repository can build a config entirely in
// Go, run it with its handler on the program's own mux, shut it down in
// the documented order, and that New refuses a bad job name, transaction
// control in SQL and a typo'd checkpoint mode with ParseConfig's reasons:
// testdata/outside/config_test.go, run in such a module.
func TestWorker_OutsideConfig(t *testing.T) {
	runOutside(t, "testdata/outside/config_test.go", "^TestConfigInGo", "TestConfigInGo", "TestConfigInGo_Refused")
}

// runOutside copies the test file src into package embed of a module
// outside this repository, runs its tests that match run, and wants a PASS
// of each of names.
func runOutside(t *testing.T, src, run string, names ...string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	dir := outside.Module(t, map[string][]byte{"embed/" + src[strings.LastIndexByte(src, '/')+1:]: b})
	out := outside.Go(t, dir, "test", "-count=1", "-run", run, "-v", "./embed")
	for _, name := range names {
		if !strings.Contains(out, "--- PASS: "+name+" ") {
			t.Errorf("got no PASS of %s, want one\n%s", name, out)
		}
	}
}
