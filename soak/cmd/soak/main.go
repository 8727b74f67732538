// Command soak runs a process (or watches one already running) for a while,
// scraping its Prometheus metrics, and sounds the alarm when connections,
// file descriptors, goroutines or memory keep growing, or when one of the
// worker's invariants breaks.
//
//	soak [flags] -- COMMAND ARGS...   start COMMAND, soak it, SIGTERM it
//	soak [flags] --target URL         soak a process someone else runs
//	soak compare BASELINE CANDIDATE   compare two soaks' reports
//
// Exit status: 0 steady, 1 leak or broken invariant, 2 could not soak.
// The command is soak/internal/cli; this is its entry point.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/sqlworker/worker/soak/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := cli.Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(cli.ExitCode(err, os.Stderr))
}
