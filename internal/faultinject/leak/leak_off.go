//go:build !leak

// Package leak injects resource leaks into a worker built with the "leak"
// build tag, so that the soak harness and the alert rules can prove that
// they catch them. Without the tag, Enabled is false, every call site is
// compiled out, and the functions here are empty.
package leak

import (
	"context"
	"database/sql"
)

// Enabled reports whether the binary was built with the leak tag.
const Enabled = false

// Mode returns the leak mode chosen by WORKER_LEAK; "" without the tag.
func Mode() string { return "" }

// Check validates WORKER_LEAK; always nil without the tag.
func Check() error { return nil }

// Init is Handle.Init's leak hook; without the tag it returns db.
func Init(_ context.Context, db *sql.DB, _ Openers) (*sql.DB, bool, error) {
	return db, false, nil
}

// AfterInit is the per-run leak hook; without the tag it does nothing.
func AfterInit(context.Context, *sql.DB) error { return nil }
