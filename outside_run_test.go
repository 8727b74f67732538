package worker_test

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/sqlworker/worker/internal/outside"
)

// Ensure a module outside this repository tests its jobs without sleeping:
// its own test (internal/outside/testdata/run_test.go) runs a job with
// RunNow and waits on the run hook, drives a schedule with jobtest.RunTick,
// and checks job_runs.
func TestWorker_OutsideRunNow(t *testing.T) {
	b, err := os.ReadFile("internal/outside/testdata/run_test.go")
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b, []byte("time.Sleep")) {
		t.Fatal("run_test.go: got a time.Sleep, want waits on signals only")
	}
	dir := outside.Module(t, map[string][]byte{"embed/run_test.go": b})
	out := outside.Go(t, dir, "test", "-count=1", "-v", "./embed")
	for _, name := range []string{"TestRunNow", "TestRunTick"} {
		if !strings.Contains(out, "--- PASS: "+name+" ") {
			t.Errorf("got no PASS of %s, want one\n%s", name, out)
		}
	}
}
