//go:build soakselftest

package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sqlworker/worker/internal/workertest"
	"github.com/sqlworker/worker/soak/internal/report"
)

// The self-test's soaks: 30 s warm-up, then 30 s in which the leak must be
// caught. The duration is the budget: a leak not caught by its end makes
// the soak exit 0 and the test fail.
const (
	selftestWarmup   = "30s"
	selftestDuration = "60s"
	selftestStop     = "15s"
)

// selftestModes maps each leak mode to the series the alarm must name
// (each a prefix of a key in report.json's "named"); "" is the clean build.
var selftestModes = map[string][]string{
	// PERF-408: a handle per Init breaks the one-handle invariant.
	"handle": {"worker_db_handles_open"},
	// Un-closed rows hold their connection: the pool is pinned at its
	// limit with callers waiting.
	"rows": {"go_sql_in_use_connections"},
	// A file per run: the FD counts grow, and the type says "file".
	"fd": {"process_open_fds", `worker_open_fds{type="file"}`},
	// A blocked goroutine per run.
	"goroutine": {"go_goroutines"},
	// A prepared statement per run, counted by the driver.
	"stmt": {"worker_db_statements_open"},
	// The clean build must pass.
	"": nil,
}

func mustEnv(t *testing.T, name string) string {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		t.Fatalf("%s is not set; run `make soak-selftest`", name)
	}
	return v
}

// TestSelftest soaks the leak-injected worker once per mode and the clean
// worker once, in parallel, each on its own port and database.
func TestSelftest(t *testing.T) {
	soakBin := mustEnv(t, "SOAK_BIN")
	clean := mustEnv(t, "SOAK_WORKER")
	leaky := mustEnv(t, "SOAK_WORKER_LEAK")
	config := mustEnv(t, "SOAK_CONFIG")
	reports := mustEnv(t, "SOAK_REPORT_DIR")

	modes := []string{"handle", "rows", "fd", "goroutine", "stmt", ""}
	for _, mode := range modes {
		name := mode
		if name == "" {
			name = "clean"
		}
		addr := workertest.FreeAddr(t)
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(reports, name)
			if err := os.RemoveAll(dir); err != nil {
				t.Fatal(err)
			}
			worker := leaky
			if mode == "" {
				worker = clean
			}
			cmd := exec.Command(soakBin,
				"--duration", selftestDuration, "--warmup", selftestWarmup, "--fail-fast",
				"--stop-timeout", selftestStop, "--report-dir", dir, "--run-id", "selftest-"+name,
				"--metrics-url", "http://"+addr+"/metrics",
				"--", worker, "--config.file", config, "--db.path", filepath.Join(t.TempDir(), "soak.db"),
				"--web.listen-address", addr)
			cmd.Env = append(os.Environ(), "WORKER_LEAK="+mode)
			out, err := cmd.CombinedOutput()
			code := 0
			var exit *exec.ExitError
			if errors.As(err, &exit) {
				code = exit.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			last := lines[len(lines)-1]

			want := 1
			if mode == "" {
				want = 0
			}
			if code != want {
				t.Fatalf("exit status %d, want %d; last line: %s\n%s", code, want, last, out)
			}
			b, err := os.ReadFile(filepath.Join(dir, report.JSONFile))
			if err != nil {
				t.Fatal(err)
			}
			var r report.Report
			if err := json.Unmarshal(b, &r); err != nil {
				t.Fatal(err)
			}
			for _, w := range selftestModes[mode] {
				if !slices.ContainsFunc(r.Named, func(n string) bool { return strings.HasPrefix(n, w) }) {
					t.Errorf("named %v, want it to include %s; last line: %s", r.Named, w, last)
				}
			}
			when := "during warm-up"
			if after := r.Elapsed - r.Warmup; after >= 0 {
				when = time.Duration(after*float64(time.Second)).Round(time.Second).String() + " after warm-up"
			}
			if mode == "" {
				when = "not caught: steady"
			}
			t.Logf("%s: exit %d after %s (%s): %s", name, code, time.Duration(r.Elapsed*float64(time.Second)).Round(time.Second), when, last)
			fmt.Fprintf(os.Stderr, "selftest %-9s exit %d, named %v, %s\n", name, code, r.Named, when)
		})
	}
}
