package workertest

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3" // OpenDB reads the worker's database with the plain driver

	"github.com/sqlworker/worker/internal/jobs"
)

// BuiltinsOff is a config fragment that disables every built-in job, for
// tests that watch one job of their own.
var BuiltinsOff = builtins("{enabled: false}")

// EverySecond is a config whose jobs, the built-in ones and one SQL job,
// all run every second.
var EverySecond = builtins(`{schedule: "@every 1s"}`) + `jobs:
  - name: rollup
    schedule: "* * * * * *"
    timeout: 10s
    sql: |
      CREATE TABLE IF NOT EXISTS events (x);
      INSERT INTO events VALUES (1), (2);
      DELETE FROM events;
`

// builtins returns a builtin: section that gives every built-in job the
// same settings (a YAML flow mapping).
func builtins(settings string) string {
	var b strings.Builder
	b.WriteString("\nbuiltin:\n")
	for _, j := range jobs.BuiltinJobs {
		fmt.Fprintf(&b, "  %s: %s\n", j.Name, settings)
	}
	return b.String()
}

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

// FileAndDir returns the bytes of the file at path and the names in its
// directory, space-separated in directory order: what a test compares before
// and after to prove that a refused database was left as it was.
func FileAndDir(tb testing.TB, path string) ([]byte, string) {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	entries, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		tb.Fatal(err)
	}
	names := make([]string, len(entries))
	for i, e := range entries {
		names[i] = e.Name()
	}
	return b, strings.Join(names, " ")
}

// Strings returns the rows of q, a query of one column, as strings, within
// a minute.
func Strings(tb testing.TB, d *sql.DB, q string, args ...any) []string {
	tb.Helper()
	rows, err := d.QueryContext(CtxTimeout(tb, time.Minute), q, args...)
	if err != nil {
		tb.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			tb.Fatal(err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		tb.Fatal(err)
	}
	return out
}
