package main_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/sqlworker/worker/internal/pgtest"
	"github.com/sqlworker/worker/internal/workertest"
)

// pgEverySecond is a config for PostgreSQL whose jobs, the built-in ones it
// offers and one SQL job in PostgreSQL's SQL, run every second.
const pgEverySecond = `builtin:
  heartbeat: {schedule: "@every 1s"}
  history_prune: {schedule: "@every 1s"}
jobs:
  - name: rollup
    schedule: "* * * * * *"
    timeout: 10s
    sql: |
      CREATE TABLE IF NOT EXISTS events (x int);
      INSERT INTO events VALUES (1), (2);
      DELETE FROM events;
`

// pgContract is the metric contract that holds on PostgreSQL: every
// metric of contract but the -wal file's and quick_check's, and the
// server's view of the connections. worker_db_size_bytes is the server's
// pg_database_size there.
func pgContract() []string {
	var out []string
	for _, name := range contract {
		switch name {
		case "worker_db_wal_size_bytes", "worker_db_quick_check_ok":
			continue
		}
		out = append(out, name)
	}
	return append(out, "worker_db_server_connections")
}

// pgConn is a connection of the test's own to srv.
func pgConn(t *testing.T, srv *pgtest.Server) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(context.Background(), srv.DSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// Ensure the built worker runs on PostgreSQL with --db.url: its jobs run
// and their rows land in job_runs, the heartbeat has its replica's row,
// /metrics holds the client contract and worker_db_server_connections, which
// equals the client's count of open connections at rest, and the password
// of the URL is masked in the logs and on the landing page.
func TestWorker_Postgres(t *testing.T) {
	srv := pgtest.New(t)
	srv.Start(t)
	const secret = "s3cret-in-argv" // the server trusts any password
	u := strings.Replace(srv.URL(), "postgres@", "postgres:"+secret+"@", 1)
	w := workertest.Start(t, workertest.Options{Bin: workerBin, Config: pgEverySecond, DBURL: u,
		Args: []string{"--db.replica-id", "e2e-1"}})
	w.WaitFor(t, "running jobs", waitLimit, func() bool {
		return workertest.Sum(w.Scrape(t)["worker_job_runs_total"], map[string]string{"result": "success"}) >= 9
	})
	mfs := w.Scrape(t)
	for _, name := range pgContract() {
		if _, ok := mfs[name]; !ok {
			t.Errorf("metric %s: missing from /metrics", name)
		}
	}
	for _, name := range []string{"worker_db_wal_size_bytes", "worker_db_quick_check_ok"} {
		if _, ok := mfs[name]; ok {
			t.Errorf("metric %s: on /metrics, want it absent on PostgreSQL", name)
		}
	}
	// The database's size is the server's (issue 18: the dashboard's
	// Database size panel had no data on PostgreSQL).
	if got := workertest.Sum(mfs["worker_db_size_bytes"], nil); got < 1<<20 {
		t.Errorf("worker_db_size_bytes on PostgreSQL: got %v, want pg_database_size (several MB)", got)
	}
	if got := workertest.Sum(mfs["worker_job_runs_total"], map[string]string{"result": "failure"}); got != 0 {
		t.Errorf("worker_job_runs_total{result=\"failure\"}: got %v, want 0", got)
	}
	if got := workertest.Sum(mfs["worker_db_handles_open"], nil); got != 1 {
		t.Errorf("worker_db_handles_open: got %v, want 1", got)
	}

	// At rest the pool's connections are idle and open: the server sees
	// exactly the client's. Jobs run every second, so a scrape can fall on
	// a connection opening; several get a chance.
	w.WaitFor(t, "server connections equal to the client's", waitLimit, func() bool {
		m := w.Scrape(t)
		server := workertest.Sum(m["worker_db_server_connections"], nil)
		client := workertest.Sum(m["worker_db_connections_open"], nil)
		return server > 0 && server == client && client == workertest.Sum(m["go_sql_open_connections"], nil)
	})

	pg := pgConn(t, srv)
	var runs, beats int
	if err := pg.QueryRow(context.Background(),
		"SELECT (SELECT count(*) FROM job_runs WHERE job = 'rollup' AND result = 'success' AND rows_affected = 4 AND ended_at >= started_at), (SELECT count(*) FROM heartbeat WHERE id = 'e2e-1')").
		Scan(&runs, &beats); err != nil {
		t.Fatal(err)
	}
	if runs < 1 || beats != 1 {
		t.Errorf("rollup's successful rows with 4 rows changed: got %d, want ≥ 1; heartbeat rows of e2e-1: got %d, want 1", runs, beats)
	}
	var backends int
	if err := pg.QueryRow(context.Background(), "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'worker-e2e-1'").Scan(&backends); err != nil {
		t.Fatal(err)
	}
	if backends < 1 {
		t.Errorf("backends named worker-e2e-1: got %d, want ≥ 1", backends)
	}

	code, body, err := w.Get("/")
	if err != nil || code != 200 {
		t.Fatalf("GET /: got %d, %v", code, err)
	}
	if strings.Contains(body, secret) || !strings.Contains(body, "postgres:xxxxx@") {
		t.Errorf("landing page: want the URL with its password masked, got\n%s", body)
	}
	if code, _ := w.Stop(t, waitLimit); code != 0 {
		t.Fatalf("exit code: got %d, want 0", code)
	}
	logs := w.Logs()
	if strings.Contains(logs, secret) {
		t.Errorf("the password is in the logs:\n%s", logs)
	}
	if !strings.Contains(logs, "visible in the process list") && !strings.Contains(logs, "every user can read in the process list") {
		t.Errorf("logs: want a warning about the password on the command line, got\n%s", logs)
	}
}

// Ensure a worker whose PostgreSQL server is down at start stays up, not
// ready, with /readyz naming the cause, and gets ready by itself, without a
// restart, once the server is up.
func TestWorker_PostgresServerDown(t *testing.T) {
	srv := pgtest.New(t) // not started
	w := workertest.Start(t, workertest.Options{Bin: workerBin, Config: pgEverySecond, DBURL: srv.URL()})
	code, body, err := w.Get("/readyz")
	if err != nil {
		t.Fatal(err)
	}
	if code != 503 || !strings.Contains(body, "database: database is not open: cannot open database postgres://postgres@") ||
		!strings.Contains(body, "failed to connect") {
		t.Fatalf("GET /readyz with the server down: got %d %q, want 503 naming the failed connect", code, body)
	}
	if got := w.Status("/healthz"); got != 200 {
		t.Errorf("GET /healthz: got %d, want 200", got)
	}
	// Readiness is logged when it is true (issue 18): not while /readyz
	// answers 503.
	if logs := w.Logs(); strings.Contains(logs, `msg="Worker ready"`) || !strings.Contains(logs, `msg="Worker started; not ready until the database opens"`) {
		t.Errorf("logs with the server down: want \"Worker started; not ready until the database opens\" and no \"Worker ready\", got\n%s", logs)
	}
	srv.Start(t)
	w.WaitFor(t, "ready once the server is up", waitLimit, func() bool { return w.Status("/readyz") == 200 })
	w.WaitFor(t, "\"Worker ready\" logged", waitLimit, func() bool { return strings.Contains(w.Logs(), `msg="Worker ready"`) })
	w.WaitFor(t, "a successful run", waitLimit, func() bool {
		return workertest.Sum(w.Scrape(t)["worker_job_runs_total"], map[string]string{"result": "success"}) >= 1
	})
	if w.Exited() {
		t.Fatal("worker exited; want the same process ready")
	}
	if code, _ := w.Stop(t, waitLimit); code != 0 {
		t.Fatalf("exit code: got %d, want 0", code)
	}
}

// Ensure bad PostgreSQL settings exit 2 with one line naming the flag or
// field, without the password, and --config.check shows the URL masked.
func TestWorker_PostgresBadInput(t *testing.T) {
	dir := t.TempDir()
	both := filepath.Join(dir, "both.yml")
	if err := os.WriteFile(both, []byte("database:\n  path: w.db\n  url: postgres://u@h/db\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"UnknownParam", []string{"--db.url", "postgres://u:s3cret@h/db?colour=blue"}, `worker: --db.url: unknown parameter "colour"`},
		{"NotAURL", []string{"--db.url", "postgres://u:s3cret@h:port/db"}, `worker: --db.url: not a URL: invalid port ":port" after host: want postgres://user@host:5432/dbname`},
		{"NotAURLBracket", []string{"--db.url", "postgres://u:s3cret@[::1/db"}, `worker: --db.url: not a URL: missing ']' in host: want postgres://user@host:5432/dbname`},
		// The bad escape is in the password: the reason must not quote it.
		{"NotAURLEscapeInPassword", []string{"--db.url", "postgres://u:s3cret%zz@h/db"}, `worker: --db.url: not a URL: invalid URL escape in the user or password (write % as %25): want postgres://user@host:5432/dbname`},
		{"Scheme", []string{"--db.url", "mysql://u:s3cret@h/db"}, `worker: --db.url: scheme "mysql": want postgres:// or postgresql://`},
		{"WithPath", []string{"--db.url", "postgres://u@h/db", "--db.path", "w.db"}, "worker: --db.url: cannot be set together with --db.path: the worker uses PostgreSQL (url) or an SQLite file (path), not both"},
		{"BothInFile", []string{"--config.file", both}, "worker: config file " + both + ": database.url: cannot be set together with database.path: the worker uses PostgreSQL (url) or an SQLite file (path), not both"},
		{"PasswordFile", []string{"--db.url", "postgres://u@h/db", "--db.password-file", filepath.Join(dir, "nope")},
			"worker: --db.password-file: cannot read password file: open " + filepath.Join(dir, "nope") + ": no such file or directory"},
		{"ReplicaID", []string{"--db.url", "postgres://u@h/db", "--db.replica-id", "a b"}, `worker: --db.replica-id: want 1 to 56 letters, digits, '.', '_' or '-', starting with a letter or digit, got "a b"`},
		// An explicitly empty value, or "-" (which kingpin read as empty),
		// is refused, not taken as the default (issue 18).
		{"ReplicaIDEmpty", []string{"--db.url", "postgres://u@h/db", "--db.replica-id", ""}, "worker: --db.replica-id: must not be empty; leave the flag out for the default"},
		{"ReplicaIDEmptyEquals", []string{"--db.url", "postgres://u@h/db", "--db.replica-id="}, "worker: --db.replica-id: must not be empty; leave the flag out for the default"},
		{"ReplicaIDDash", []string{"--db.url", "postgres://u@h/db", "--db.replica-id", "-"}, `worker: --db.replica-id: want 1 to 56 letters, digits, '.', '_' or '-', starting with a letter or digit, got "-"`},
		{"URLEmpty", []string{"--db.url", ""}, "worker: --db.url: must not be empty; leave the flag out for the default"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			cmd := newCmd(tc.args...)
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 2 {
				t.Fatalf("exit: got %v, want status 2\n%s", err, stderr.String())
			}
			if got := strings.TrimSuffix(stderr.String(), "\n"); got != tc.want {
				t.Errorf("stderr: got %q, want %q", got, tc.want)
			}
		})
	}
	out, err := newCmd("--config.check", "--db.url", "postgres://u:s3cret@db.example/jobs", "--db.replica-id", "r1").CombinedOutput()
	if err != nil {
		t.Fatalf("--config.check: %v\n%s", err, out)
	}
	if s := string(out); strings.Contains(s, "s3cret") ||
		!strings.Contains(s, "database: postgres://u:xxxxx@db.example/jobs (PostgreSQL, application_name worker-r1, max_open_conns 4)") ||
		strings.Contains(s, "wal_checkpoint") {
		t.Errorf("--config.check: want the URL masked and no SQLite-only job, got\n%s", s)
	}
}

// Ensure PERF-408 shows on PostgreSQL on both sides of the wire: the leak
// build in handle mode opens a handle per run, and the client's handle and
// connection counts and the server's count of this replica's backends all
// rise together.
func TestWorker_PostgresPERF408(t *testing.T) {
	srv := pgtest.New(t)
	srv.Start(t)
	w := workertest.Start(t, workertest.Options{Bin: workertest.BuildOnce(t, "leak"), Config: pgEverySecond,
		DBURL: srv.URL(), Env: []string{"WORKER_LEAK=handle"}})
	w.WaitFor(t, "leaked handles and backends", waitLimit, func() bool {
		m := w.Scrape(t)
		handles := workertest.Sum(m["worker_db_handles_open"], nil)
		client := workertest.Sum(m["worker_db_connections_open"], nil)
		server := workertest.Sum(m["worker_db_server_connections"], nil)
		return handles >= 5 && client >= 5 && server >= 5
	})
	w.Kill(t)
}
