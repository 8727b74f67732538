package workertest

import (
	"context"
	"database/sql"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3" // OpenDB reads the worker's database with the plain driver
)

// BuiltinsOff is a config fragment that disables every built-in job, for
// tests that watch one job of their own.
const BuiltinsOff = `
builtin:
  heartbeat: {enabled: false}
  wal_checkpoint: {enabled: false}
  optimize: {enabled: false}
  quick_check: {enabled: false}
  history_prune: {enabled: false}
`

// EverySecond is a config whose jobs, the built-in ones and one SQL job,
// all run every second.
const EverySecond = `
builtin:
  heartbeat: {schedule: "@every 1s"}
  wal_checkpoint: {schedule: "@every 1s"}
  optimize: {schedule: "@every 1s"}
  quick_check: {schedule: "@every 1s"}
  history_prune: {schedule: "@every 1s"}
jobs:
  - name: rollup
    schedule: "* * * * * *"
    timeout: 10s
    sql: |
      CREATE TABLE IF NOT EXISTS events (x);
      INSERT INTO events VALUES (1), (2);
      DELETE FROM events;
`

// OpenDB opens a database for a test's own checks with the given URI
// parameters (such as mode=ro), closed at cleanup.
func OpenDB(tb testing.TB, path, params string) *sql.DB {
	tb.Helper()
	d, err := sql.Open("sqlite3", "file:"+path+"?"+params)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { d.Close() })
	return d
}

// CtxTimeout returns a context done after d or at cleanup.
func CtxTimeout(tb testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	tb.Cleanup(cancel)
	return ctx
}
