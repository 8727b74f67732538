package cli

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/sqlworker/worker/internal/pgtest"
	"github.com/sqlworker/worker/internal/workertest"
	"github.com/sqlworker/worker/soak/internal/invariant"
	"github.com/sqlworker/worker/soak/internal/report"
)

// childEnv picks the behaviour of this test binary when it runs as the
// soaked command: clean, die, stubborn or unclean.
const (
	childEnv  = "SOAK_TEST_CHILD"
	childAddr = "SOAK_TEST_ADDR"
)

// childMain serves worker-like metrics on $SOAK_TEST_ADDR until SIGTERM.
// As a replica (modes pg and pgbypass), its last two arguments are its
// number and port, and it serves a worker on PostgreSQL: in pgbypass,
// replica 2's server shows 3 backends more than its client counts.
func childMain() int {
	mode := os.Getenv(childEnv)
	addr := os.Getenv(childAddr)
	render := worker(1, true)
	if mode == "pg" || mode == "pgbypass" {
		n := len(os.Args)
		replica, port := os.Args[n-2], os.Args[n-1]
		addr = "127.0.0.1:" + port
		extra := 0
		if mode == "pgbypass" && replica == "2" {
			extra = 3
		}
		render = postgresWorker(extra)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM)
	if mode == "stubborn" {
		signal.Ignore(syscall.SIGTERM)
	}
	var n atomic.Int64
	died := make(chan struct{})
	srv := &http.Server{Addr: addr, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		i := n.Add(1)
		if mode == "die" && i == 30 {
			close(died)
		}
		fmt.Fprint(w, render(int(i)))
	})}
	go func() { _ = srv.ListenAndServe() }()
	select {
	case <-sig:
	case <-died:
		return 3
	}
	_ = srv.Shutdown(context.Background())
	if mode == "unclean" {
		return 1
	}
	return 0
}

// soakChild soaks this test binary started in mode.
func soakChild(t *testing.T, mode string, extra ...string) (stdout, stderr string, err error) {
	t.Helper()
	addr := workertest.FreeAddr(t)
	t.Setenv(childEnv, mode)
	t.Setenv(childAddr, addr)
	args := append(append(quick, "--metrics-url", "http://"+addr+"/metrics", "--stop-timeout", "2s"), extra...)
	args = append(args, "--", os.Args[0], "-test.run=^$")
	stdout, stderr, _, err = soak(t, args...)
	return stdout, stderr, err
}

// Ensure the command mode starts, soaks and stops a clean target.
func TestRun_Command(t *testing.T) {
	t.Run("Clean", func(t *testing.T) {
		stdout, stderr, err := soakChild(t, "clean")
		if err != nil {
			t.Fatalf("got %v, want nil\n%s", err, stderr)
		}
		if !strings.HasPrefix(lastLine(stdout), "soak: STEADY") {
			t.Fatalf("last line %q, want STEADY", lastLine(stdout))
		}
	})
	t.Run("DiesDuringSoak", func(t *testing.T) {
		_, _, err := soakChild(t, "die")
		if err == nil || errors.Is(err, ErrAlarm) || !strings.Contains(err.Error(), "died") {
			t.Fatalf("got %v, want a could-not-soak error saying the target died", err)
		}
	})
	t.Run("UncleanExit", func(t *testing.T) {
		stdout, _, err := soakChild(t, "unclean")
		if !errors.Is(err, ErrAlarm) || !strings.Contains(lastLine(stdout), "broken clean_exit") {
			t.Fatalf("got %v (%q), want ErrAlarm naming clean_exit", err, lastLine(stdout))
		}
	})
	t.Run("IgnoresSIGTERM", func(t *testing.T) {
		stdout, _, err := soakChild(t, "stubborn")
		if !errors.Is(err, ErrAlarm) || !strings.Contains(lastLine(stdout), "killed") {
			t.Fatalf("got %v (%q), want ErrAlarm saying it was killed", err, lastLine(stdout))
		}
	})
	t.Run("NeverReady", func(t *testing.T) {
		_, _, _, err := soak(t, "--duration", "2s", "--warmup", "1s", "--ready-timeout", "300ms", "--metrics-url", "http://"+workertest.FreeAddr(t)+"/metrics", "--", "sleep", "5")
		if err == nil || errors.Is(err, ErrAlarm) || !strings.Contains(err.Error(), "never answered") {
			t.Fatalf("got %v, want a could-not-soak error saying it never answered", err)
		}
	})
}

// postgresWorker renders a worker on PostgreSQL whose server shows extra
// backends more than its client counts connections.
func postgresWorker(extra int) func(n int) string {
	return func(n int) string {
		client := 1 + n%2 // worker's worker_db_connections_open
		return worker(1, true)(n) + fmt.Sprintf(`# TYPE worker_db_server_connections gauge
worker_db_server_connections{state="active"} 1
worker_db_server_connections{state="idle"} %d
worker_db_server_connections{state="idle_in_transaction"} 0
`, client-1+extra)
	}
}

// soakReplicas soaks 3 replicas of this test binary in mode, on the
// PostgreSQL server at dbURL.
func soakReplicas(t *testing.T, mode, dbURL string, extra ...string) (stdout, stderr, dir string, err error) {
	t.Helper()
	t.Setenv(childEnv, mode)
	args := append(append(quick, "--replicas", "3", "--postgres.url", dbURL,
		"--metrics-url", "http://"+workertest.FreeAddr(t)+"/metrics", "--stop-timeout", "2s"), extra...)
	args = append(args, "--", os.Args[0], "-test.run=^$", "{replica}", "{port}")
	return soak(t, args...)
}

// Ensure 3 replicas on a real PostgreSQL server are soaked together, each
// judged on its own with the server's count of backends beside: steady when
// each server count matches its client's, and the alarm naming the replica
// and both counts when one replica's server shows backends its client does
// not count (a bypass of the counting driver).
func TestRun_Replicas(t *testing.T) {
	pg := pgtest.New(t)
	pg.Start(t)
	t.Run("Steady", func(t *testing.T) {
		stdout, stderr, dir, err := soakReplicas(t, "pg", pg.URL())
		if err != nil {
			t.Fatalf("got %v, want nil\n%s\n%s", err, stdout, stderr)
		}
		r := readReport(t, dir)
		held := 0
		for _, inv := range r.Invariants {
			if inv.Rule == invariant.RuleServerConn && inv.Applies && !inv.Broken {
				held++
			}
		}
		if got, want := held, 3; got != want {
			t.Errorf("server_within_client held on %d replicas, want %d", got, want)
		}
		for _, key := range []string{`worker_db_handles_open{replica="3"}`, `soak_replica_server_backends{replica="1"}`, "soak_server_backends"} {
			if !slices.ContainsFunc(r.Series, func(s report.Series) bool { return s.Key == key }) {
				t.Errorf("no series %s in the report, want one", key)
			}
		}
		for i := 1; i <= 3; i++ {
			if _, err := os.Stat(filepath.Join(dir, fmt.Sprintf("target-%d.log", i))); err != nil {
				t.Errorf("replica %d's log: %v", i, err)
			}
		}
	})
	t.Run("Bypass", func(t *testing.T) {
		stdout, _, dir, err := soakReplicas(t, "pgbypass", pg.URL(), "--fail-fast")
		if !errors.Is(err, ErrAlarm) {
			t.Fatalf("got %v, want ErrAlarm", err)
		}
		// The client's count alternates between 1 and 2; the server's is 3 above.
		want := regexp.MustCompile(`^soak: INVARIANT BROKEN after \d+s: broken server_within_client \(replica 2: ([45]) server backends, ([12]) client-side connections open: 3 the client does not count, for 6 samples in a row\)\.$`)
		m := want.FindStringSubmatch(lastLine(stdout))
		if m == nil || m[1][0]-m[2][0] != 3 {
			t.Errorf("last line %q, want it to match %s", lastLine(stdout), want)
		}
		if got, want := strings.Join(readReport(t, dir).Named, ","), `soak_replica_server_backends{replica="2"}`; got != want {
			t.Errorf("named %q, want %q", got, want)
		}
	})
}
