// Command soak runs a process (or watches one already running) for a while,
// scraping its Prometheus metrics, and sounds the alarm when connections,
// file descriptors, goroutines or memory keep growing, or when one of the
// worker's invariants breaks.
//
//	soak [flags] -- COMMAND ARGS...   start COMMAND, soak it, SIGTERM it
//	soak [flags] --target URL         soak a process someone else runs
//
// Exit status: 0 steady, 1 leak or broken invariant, 2 could not soak.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

// Exit statuses.
const (
	exitSteady = 0
	exitAlarm  = 1
	exitError  = 2
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

// exitCode maps run's error to the exit status, printing the one-line
// reason for errors that run did not already report.
func exitCode(err error, stderr *os.File) int {
	switch {
	case err == nil:
		return exitSteady
	case errors.Is(err, ErrAlarm):
		return exitAlarm
	default:
		fmt.Fprintf(stderr, "soak: %v\n", err)
		return exitError
	}
}
