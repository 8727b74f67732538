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
	b, err := os.ReadFile("example_test.go")
	if err != nil {
		t.Fatal(err)
	}
	dir := outside.Module(t, map[string][]byte{"embed/example_test.go": b})
	out := outside.Go(t, dir, "test", "-count=1", "-run", "^Example$", "-v", "./embed")
	if !strings.Contains(out, "--- PASS: Example ") {
		t.Fatalf("got no PASS of Example, want one\n%s", out)
	}
}

// Ensure a module outside this repository can build a config entirely in
// Go, run it with its handler on the program's own mux, shut it down in
// the documented order, and that New refuses a bad job name, transaction
// control in SQL and a typo'd checkpoint mode with ParseConfig's reasons:
// testdata/outside/config_test.go, run in such a module.
func TestWorker_OutsideConfig(t *testing.T) {
	b, err := os.ReadFile("testdata/outside/config_test.go")
	if err != nil {
		t.Fatal(err)
	}
	dir := outside.Module(t, map[string][]byte{"embed/config_test.go": b})
	out := outside.Go(t, dir, "test", "-count=1", "-run", "^TestConfigInGo", "-v", "./embed")
	for _, name := range []string{"TestConfigInGo", "TestConfigInGo_Refused"} {
		if !strings.Contains(out, "--- PASS: "+name+" ") {
			t.Errorf("got no PASS of %s, want one\n%s", name, out)
		}
	}
}
