//go:build soakselftest

package main

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sqlworker/worker/internal/workertest"
	"github.com/sqlworker/worker/soak/internal/origin"
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
// (each a name, with labels that the key in report.json's "named" must
// hold); "" is the clean build.
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

// leakPkg is the package of the injected leaks.
const leakPkg = "github.com/sqlworker/worker/internal/faultinject/leak."

// selftestCulprits maps each leak mode whose resource a profile counts to
// the series whose origin must name its injecting function, in
// internal/faultinject/leak, at the top site or among the program frames above it:
// handles and statements from sqlcount's profiles, goroutines from the
// goroutine profile.
var selftestCulprits = map[string]struct{ series, fn string }{
	"handle":    {"worker_db_handles_open", leakPkg + "Init"},
	"goroutine": {"go_goroutines", leakPkg + "AfterInit"},
	"stmt":      {"worker_db_statements_open", leakPkg + "AfterInit"},
}

// selftestNoCulprit are the leak modes that no profile counts: a file (fd)
// and a connection opened around sqlcount (bypass). The verdict must not
// name a site of sqlcount's profiles for them, which would send the reader
// to database code that does not leak. (No profile says who holds a pooled
// connection either; the rows mode's origin, where its connections were
// opened, is logged, not checked.)
var selftestNoCulprit = map[string]bool{"fd": true, bypassMode: true}

// bypassMode is the leak mode that opens PostgreSQL connections outside
// the counting driver: only the server sees them, so the alarm must come
// from comparing the server's count with the client's, and from no client
// count. Soaked on PostgreSQL when the leak build knows it.
const bypassMode = "bypass"

// bypassNamed are the series the bypass alarm must name one of: the
// per-replica rule's, or the cluster rule's; and clientCounts the client's
// counts of its connections, which it must not name.
var (
	bypassNamed  = []string{"soak_replica_server_backends", "soak_server_backends"}
	clientCounts = []string{"worker_db_connections_open", "worker_db_handles_open", "go_sql_open_connections", "go_sql_in_use_connections"}
)

// named reports whether the key of a named series matches want: the same
// metric name, and every label of want among its labels.
func named(key, want string) bool {
	name, labels, _ := strings.Cut(want, "{")
	if key != name && !strings.HasPrefix(key, name+"{") {
		return false
	}
	for _, l := range strings.Split(strings.TrimSuffix(labels, "}"), ",") {
		if l != "" && !strings.Contains(key, l) {
			return false
		}
	}
	return true
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
// worker once, in parallel, each on its own port and database. With
// SOAK_DB=postgres each soak is SOAK_REPLICAS replicas, all of the same
// build and mode, on a PostgreSQL server of its own (bin/soak --postgres),
// and the bypass mode is soaked too.
func TestSelftest(t *testing.T) {
	soakBin := mustEnv(t, "SOAK_BIN")
	clean := mustEnv(t, "SOAK_WORKER")
	leaky := mustEnv(t, "SOAK_WORKER_LEAK")
	config := mustEnv(t, "SOAK_CONFIG")
	reports := mustEnv(t, "SOAK_REPORT_DIR")
	postgres := os.Getenv("SOAK_DB") == "postgres"
	replicas := cmp.Or(os.Getenv("SOAK_REPLICAS"), "3")

	modes := []string{"handle", "rows", "fd", "goroutine", "stmt", ""}
	if postgres {
		// A backend the client does not count: only the server-side
		// invariants can see it.
		modes = append(modes, bypassMode)
	}
	for _, mode := range modes {
		name := mode
		if name == "" {
			name = "clean"
		}
		addr := workertest.FreeAddr(t)
		if postgres {
			// Ports for the replicas above it; a taken one makes that
			// replica fail to start, which the soak reports (exit 2).
			addr = freeRun(t, replicas)
		}
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
			args := []string{"--duration", selftestDuration, "--warmup", selftestWarmup, "--fail-fast",
				"--stop-timeout", selftestStop, "--report-dir", dir, "--run-id", "selftest-" + name,
				"--metrics-url", "http://" + addr + "/metrics"}
			if postgres {
				args = append(args, "--postgres", "--replicas", replicas, "--",
					worker, "--config.file", config, "--db.url", "{db.url}", "--db.replica-id", "soak-{replica}",
					"--web.listen-address", "127.0.0.1:{port}", "--web.enable-pprof")
			} else {
				args = append(args, "--", worker, "--config.file", config, "--db.path", filepath.Join(t.TempDir(), "soak.db"),
					"--web.listen-address", addr, "--web.enable-pprof")
			}
			cmd := exec.Command(soakBin, args...)
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
				if !slices.ContainsFunc(r.Named, func(n string) bool { return named(n, w) }) {
					t.Errorf("named %v, want it to include %s; last line: %s", r.Named, w, last)
				}
			}
			if mode == bypassMode {
				if !slices.ContainsFunc(r.Named, func(n string) bool {
					return slices.ContainsFunc(bypassNamed, func(w string) bool { return named(n, w) })
				}) {
					t.Errorf("named %v, want one of the server's counts %v; last line: %s", r.Named, bypassNamed, last)
				}
				for _, n := range r.Named {
					if slices.ContainsFunc(clientCounts, func(w string) bool { return named(n, w) }) {
						t.Errorf("named %v, want no client-side count of connections (%s): the client cannot see a bypass; last line: %s", r.Named, n, last)
					}
				}
			}
			culprit := checkOrigins(t, mode, r, last)
			when := "during warm-up"
			if after := r.Elapsed - r.Warmup; after >= 0 {
				when = time.Duration(after*float64(time.Second)).Round(time.Second).String() + " after warm-up"
			}
			if mode == "" {
				when = "not caught: steady"
			}
			t.Logf("%s: exit %d after %s (%s): %s", name, code, time.Duration(r.Elapsed*float64(time.Second)).Round(time.Second), when, last)
			fmt.Fprintf(os.Stderr, "selftest %-9s exit %d, named %v, %s; origin: %s\n", name, code, r.Named, when, culprit)
		})
	}
}

// freeRun returns a loopback address whose port and the n−1 above it are
// free now.
func freeRun(t *testing.T, n string) string {
	t.Helper()
	count, err := strconv.Atoi(n)
	if err != nil || count < 1 {
		t.Fatalf("SOAK_REPLICAS: want a number ≥ 1, got %q", n)
	}
	for range 100 {
		addr := workertest.FreeAddr(t)
		host, p, _ := net.SplitHostPort(addr)
		port, _ := strconv.Atoi(p)
		ok := true
		for i := 1; i < count && ok; i++ {
			l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port+i)))
			if err != nil {
				ok = false
				continue
			}
			_ = l.Close()
		}
		if ok {
			return addr
		}
	}
	t.Fatalf("no %d free ports in a row on loopback", count)
	return ""
}

// checkOrigins checks the origins of a leak mode's soak: the injecting
// function named for the modes of selftestCulprits (in report.json and in
// the verdict line), and for the others no site of sqlcount's profiles
// claimed for a series that they do not count. It returns the top site of
// the mode's series, for the log.
func checkOrigins(t *testing.T, mode string, r report.Report, last string) string {
	t.Helper()
	o := r.Origins
	if o == nil || o.Unavailable != "" {
		t.Errorf("origins %+v, want profiles taken from the worker's --web.enable-pprof", o)
		return "none"
	}
	want, ok := selftestCulprits[mode]
	if !ok {
		var logged []string
		for _, f := range o.Findings {
			top, ok := f.Top()
			if !ok {
				continue
			}
			logged = append(logged, f.Series+" "+top.Where())
			if selftestNoCulprit[mode] && f.Explains && f.Profile != origin.Goroutine && f.Profile != origin.Heap {
				t.Errorf("%s: %s named from %s, want none: no profile counts what mode %q leaks", f.Series, top.Where(), f.Profile, mode)
			}
		}
		return "not checked: " + cmp.Or(strings.Join(logged, ", "), "none")
	}
	var found []string
	for _, f := range o.Findings {
		if !named(f.Series, want.series) {
			continue
		}
		top, ok := f.Top()
		if !ok {
			t.Errorf("%s: no site (%s), want %s", f.Series, f.Note, want.fn)
			continue
		}
		found = append(found, top.Where())
		if !slices.ContainsFunc(top.Frames(), func(fn string) bool { return fn == want.fn || strings.HasPrefix(fn, want.fn+".func") }) {
			t.Errorf("%s: top site %s, called from %v: want %s among them; all sites: %+v", f.Series, top.Function, top.Callers, want.fn, f.Sites)
		}
		if !strings.Contains(last, top.Where()) {
			t.Errorf("last line %q, want it to name %s", last, top.Where())
		}
	}
	if len(found) == 0 {
		t.Errorf("no origin of %s in report.json (%+v), want %s", want.series, o.Findings, want.fn)
	}
	return strings.Join(found, ", ")
}
