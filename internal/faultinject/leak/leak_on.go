//go:build leak

// Package leak injects resource leaks into a worker built with the "leak"
// build tag, so that the soak harness and the alert rules can prove that
// they catch them. The mode comes from the WORKER_LEAK environment variable.
package leak

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"sync"
)

// Enabled reports whether the binary was built with the leak tag.
const Enabled = true

// EnvVar names the environment variable that picks the leak mode.
const EnvVar = "WORKER_LEAK"

// Modes lists the leak modes.
// "hang" is not a leak of its own: every run blocks for ever, ignoring its
// context, so that a test can prove the worker still exits within the
// shutdown grace period plus the force timeout, recording the run as
// cancelled.
// "bypass" leaks a connection that the counting driver cannot see: each run
// opens one more on a handle opened around the wrapper (Openers.Raw) and
// keeps it, so that worker_db_connections_open stays flat while the
// server's count of the replica's backends (worker_db_server_connections)
// or, on SQLite, process_open_fds grows.
var Modes = []string{"handle", "rows", "fd", "goroutine", "stmt", "hang", "bypass"}

var (
	mode = os.Getenv(EnvVar)

	// Everything leaked stays reachable, as in PERF-408's global array, so
	// that no finalizer can quietly close it.
	mu      sync.Mutex
	kept    []any
	raw     *sql.DB                 // bypass mode's handle, opened at the first run
	openRaw func() (*sql.DB, error) // from the first Init, for AfterInit
	forever = make(chan struct{})
)

// Mode returns the leak mode chosen by WORKER_LEAK.
func Mode() string { return mode }

// Check validates WORKER_LEAK.
func Check() error {
	if mode == "" {
		return nil
	}
	for _, m := range Modes {
		if m == mode {
			return nil
		}
	}
	return fmt.Errorf("invalid %s %q: must be one of %v", EnvVar, mode, Modes)
}

func keep(v any) {
	mu.Lock()
	kept = append(kept, v)
	mu.Unlock()
}

// Init is Handle.Init's hook. In handle mode it does what PERF-408's initDb
// did: opens a new handle on every call, with open (the Handle's, on its
// database: SQLite or PostgreSQL, through the counting driver), and keeps
// it forever. It reports whether it opened one. In bypass mode it keeps
// open.Raw for AfterInit.
func Init(_ context.Context, db *sql.DB, open Openers) (*sql.DB, bool, error) {
	if mode == "bypass" {
		mu.Lock()
		if openRaw == nil {
			openRaw = open.Raw
		}
		mu.Unlock()
	}
	if mode != "handle" {
		return db, false, nil
	}
	leaked, err := open.Counted()
	if err != nil {
		return nil, false, err
	}
	keep(leaked)
	return leaked, true, nil
}

// AfterInit leaks one unit of the chosen resource per job run.
func AfterInit(_ context.Context, db *sql.DB) error {
	// context.Background: a run's context is cancelled at its end, and
	// database/sql would then close the rows for us.
	ctx := context.Background()
	switch mode {
	case "rows":
		rows, err := db.QueryContext(ctx, "SELECT 1")
		if err != nil {
			return err
		}
		keep(rows)
	case "stmt":
		stmt, err := db.PrepareContext(ctx, "SELECT 1")
		if err != nil {
			return err
		}
		keep(stmt)
	case "fd":
		f, err := os.Open(os.DevNull)
		if err != nil {
			return err
		}
		keep(f)
	case "goroutine":
		go func() { <-forever }()
	case "hang":
		<-forever // a job that ignores its context
	case "bypass":
		return bypass(ctx)
	}
	return nil
}

// bypass takes one more connection of the raw handle and keeps it: one
// backend more on the server, none more in the client's counts.
func bypass(ctx context.Context) error {
	mu.Lock()
	if raw == nil {
		if openRaw == nil {
			mu.Unlock()
			return fmt.Errorf("%s=bypass: the database handle gave no raw opener", EnvVar)
		}
		d, err := openRaw()
		if err != nil {
			mu.Unlock()
			return fmt.Errorf("%s=bypass: cannot open a raw handle: %w", EnvVar, err)
		}
		raw = d
	}
	d := raw
	mu.Unlock()
	conn, err := d.Conn(ctx)
	if err != nil {
		return fmt.Errorf("%s=bypass: cannot connect around the counting driver: %w", EnvVar, err)
	}
	keep(conn)
	return nil
}
