package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/sqlworker/worker/internal/workertest"
)

// childEnv picks the behaviour of this test binary when it runs as the
// soaked command: clean, die, stubborn or unclean.
const (
	childEnv  = "SOAK_TEST_CHILD"
	childAddr = "SOAK_TEST_ADDR"
)

// childMain serves worker-like metrics on $SOAK_TEST_ADDR until SIGTERM.
func childMain() int {
	mode := os.Getenv(childEnv)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM)
	if mode == "stubborn" {
		signal.Ignore(syscall.SIGTERM)
	}
	var n atomic.Int64
	died := make(chan struct{})
	render := worker(1, true)
	srv := &http.Server{Addr: os.Getenv(childAddr), Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
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
