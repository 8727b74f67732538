package db_test

import (
	"context"
	"database/sql"
	"errors"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sqlworker/worker/internal/db"
	"github.com/sqlworker/worker/internal/dbmetrics"
	"github.com/sqlworker/worker/internal/jobhistory"
	"github.com/sqlworker/worker/internal/pgtest"
	"github.com/sqlworker/worker/internal/schema"
	"github.com/sqlworker/worker/internal/workertest"
)

// pgHandle returns a new, unopened handle on srv's URL for replica id.
func pgHandle(t testing.TB, srv *pgtest.Server, id string) *db.Handle {
	t.Helper()
	h := db.New(db.Config{URL: srv.URL(), ReplicaID: id, MaxOpenConns: 3})
	t.Cleanup(func() {
		if err := h.Close(context.Background()); err != nil {
			t.Error(err)
		}
	})
	return h
}

// startPG returns a running server for t.
func startPG(t testing.TB) *pgtest.Server {
	t.Helper()
	srv := pgtest.New(t)
	srv.Start(t)
	return srv
}

func mustInit(t testing.TB, h *db.Handle) *sql.DB {
	t.Helper()
	d, err := h.Init(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// Ensure two handles on one fresh server, opened at the same moment,
// migrate it once between them (the advisory lock orders them), that a
// reopen migrates nothing, and that Close is safe twice.
func TestPostgres_MigrateRace(t *testing.T) {
	srv := startPG(t)
	for round := range 2 { // the second round opens a migrated database
		hs := []*db.Handle{pgHandle(t, srv, "a"), pgHandle(t, srv, "b")}
		var wg sync.WaitGroup
		errs := make([]error, len(hs))
		start := make(chan struct{})
		for i, h := range hs {
			wg.Go(func() {
				<-start
				_, errs[i] = h.Init(context.Background())
			})
		}
		close(start)
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("round %d: handle %d: Init: %v", round, i, err)
			}
		}
		var v, n int
		d := mustInit(t, hs[0])
		if err := d.QueryRow("SELECT version, (SELECT count(*) FROM worker_schema_version) FROM worker_schema_version").Scan(&v, &n); err != nil {
			t.Fatal(err)
		}
		if v != schema.PostgresVersion || n != 1 {
			t.Fatalf("round %d: worker_schema_version: got version %d in %d rows, want %d in 1", round, v, n, schema.PostgresVersion)
		}
		for _, h := range hs {
			if err := h.Health(); err != nil {
				t.Errorf("round %d: Health: got %v, want nil", round, err)
			}
			if err := h.Close(context.Background()); err != nil {
				t.Fatalf("round %d: Close: %v", round, err)
			}
			if err := h.Close(context.Background()); err != nil {
				t.Fatalf("round %d: second Close: got %v, want nil", round, err)
			}
		}
	}
}

// Ensure the history statements work on PostgreSQL: InsertRuns writes
// timestamptz times, PruneRuns deletes by ended_at and CapRuns keeps each
// job's newest rows.
func TestPostgres_History(t *testing.T) {
	ctx := context.Background()
	d := mustInit(t, pgHandle(t, startPG(t), "a"))
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var rows []jobhistory.RunRow
	for job, n := range map[string]int{"a": 10, "b": 3} {
		for i := n - 1; i >= 0; i-- {
			at := base.Add(time.Duration(i) * time.Minute)
			rows = append(rows, jobhistory.RunRow{Job: job, ScheduledAt: at, StartedAt: at, EndedAt: at.Add(1500 * time.Microsecond),
				Result: "success", RowsAffected: int64(i)})
		}
	}
	if err := jobhistory.InsertRuns(ctx, d, rows); err != nil {
		t.Fatal(err)
	}
	var ended time.Time
	if err := d.QueryRow("SELECT ended_at FROM job_runs WHERE job = 'a' AND rows_affected = 9").Scan(&ended); err != nil {
		t.Fatal(err)
	}
	if want := base.Add(9*time.Minute + time.Millisecond); !ended.Equal(want) {
		t.Errorf("ended_at: got %v, want %v (to the millisecond)", ended, want)
	}
	n, err := jobhistory.PruneRuns(ctx, d, base.Add(2*time.Minute)) // ends at 0:00.0015 and 1:00.0015 of both jobs
	if err != nil || n != 4 {
		t.Fatalf("PruneRuns: got %d (%v), want 4", n, err)
	}
	n, err = jobhistory.CapRuns(ctx, d, 3)
	if err != nil || n != 5 {
		t.Fatalf("CapRuns: got %d (%v), want 5 (a's 8 rows less 3)", n, err)
	}
	var kept string
	if err := d.QueryRow("SELECT string_agg(job || extract(minute FROM started_at)::int, ',' ORDER BY job, started_at) FROM job_runs").Scan(&kept); err != nil {
		t.Fatal(err)
	}
	if want := "a7,a8,a9,b2"; kept != want {
		t.Errorf("rows kept: got %v, want %v", kept, want)
	}
	if last, ok, err := jobhistory.LastScheduled(ctx, d, "a"); err != nil || !ok || !last.Equal(base.Add(9*time.Minute)) {
		t.Errorf("LastScheduled(a): got %v, %v, %v, want %v", last, ok, err, base.Add(9*time.Minute))
	}
	if _, ok, err := jobhistory.LastScheduled(ctx, d, "none"); err != nil || ok {
		t.Errorf("LastScheduled(none): got %v, %v, want false, nil", ok, err)
	}
	if err := jobhistory.InsertRuns(ctx, d, []jobhistory.RunRow{{Job: "r", ScheduledAt: base, StartedAt: base, EndedAt: base,
		Result: "failure", Attempt: 3, Jitter: 1250 * time.Millisecond}}); err != nil {
		t.Fatal(err)
	}
	var attempt, jitter int
	if err := d.QueryRow("SELECT attempt, jitter_ms FROM job_runs WHERE job = 'r'").Scan(&attempt, &jitter); err != nil || attempt != 3 || jitter != 1250 {
		t.Errorf("attempt, jitter_ms: got %d, %d (%v), want 3, 1250", attempt, jitter, err)
	}
}

// Ensure PostgreSQL's tables have the columns and indexes that SQLite's
// migrations give the worker's tables, by name, so that a migration added
// to one engine and not the other fails here.
func TestPostgres_SameSchemaAsSQLite(t *testing.T) {
	lite := mustSQLite(t)
	pg := mustInit(t, pgHandle(t, startPG(t), "a"))
	names := func(d *sql.DB, q string, args ...any) string {
		t.Helper()
		out := workertest.Strings(t, d, q, args...)
		sort.Strings(out)
		return strings.Join(out, ",")
	}
	for _, table := range []string{"job_runs", "heartbeat"} {
		want := names(lite, "SELECT name FROM pragma_table_info(?)", table)
		if got := names(pg, "SELECT column_name FROM information_schema.columns WHERE table_name = $1", table); got != want {
			t.Errorf("columns of %s: got %v, want SQLite's %v", table, got, want)
		}
		want = names(lite, "SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL", table)
		if got := names(pg, "SELECT indexname FROM pg_indexes WHERE tablename = $1 AND indexname NOT LIKE '%_pkey'", table); got != want {
			t.Errorf("indexes of %s: got %v, want SQLite's %v", table, got, want)
		}
	}
}

// mustSQLite returns an opened SQLite handle's pool, on a new file.
func mustSQLite(t *testing.T) *sql.DB {
	t.Helper()
	return mustInit(t, workertest.MustOpenHandle(t))
}

// Ensure the heartbeat keeps one row per replica, updated in place.
func TestPostgres_HeartbeatPerReplica(t *testing.T) {
	ctx := context.Background()
	srv := startPG(t)
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, id := range []string{"a", "b", "a"} {
		d := mustInit(t, pgHandle(t, srv, id))
		at = at.Add(time.Second)
		if n, err := jobhistory.WriteHeartbeat(ctx, d, jobhistory.Beat{ReplicaID: id, PID: 1, Hostname: "h", Version: "v", StartedAt: at, BeatAt: at}); err != nil || n != 1 {
			t.Fatalf("WriteHeartbeat %s: got %d (%v), want 1", id, n, err)
		}
	}
	d := mustInit(t, pgHandle(t, srv, "c"))
	var got string
	if err := d.QueryRow("SELECT string_agg(id || '@' || extract(second FROM beat_at)::int, ',' ORDER BY id) FROM heartbeat").Scan(&got); err != nil {
		t.Fatal(err)
	}
	if want := "a@3,b@2"; got != want {
		t.Errorf("heartbeat rows: got %v, want %v", got, want)
	}
	if _, err := jobhistory.WriteHeartbeat(ctx, d, jobhistory.Beat{}); err == nil {
		t.Error("WriteHeartbeat without a replica id: got nil, want an error")
	}
}

// Ensure a handle's connections are counted in Accounting, carry its
// application_name to the server, and are all closed by Close.
func TestPostgres_CountsAndApplicationName(t *testing.T) {
	srv := startPG(t)
	observer := mustInit(t, pgHandle(t, srv, "observer"))
	before := db.Accounting()
	h := pgHandle(t, srv, "r1")
	d := mustInit(t, h)
	if got, want := h.ApplicationName(), "worker-r1"; got != want {
		t.Fatalf("ApplicationName: got %v, want %v", got, want)
	}
	// Hold three connections open at once.
	var conns []*sql.Conn
	for range 3 {
		c, err := d.Conn(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	server := func() int {
		var n int
		if err := observer.QueryRow("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", h.ApplicationName()).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	a := db.Accounting()
	if got, want := a.ConnectionsOpened-before.ConnectionsOpened, uint64(3); got != want {
		t.Errorf("connections opened: got %v, want %v", got, want)
	}
	if got, want := a.HandlesOpened-before.HandlesOpened, uint64(1); got != want {
		t.Errorf("handles opened: got %v, want %v", got, want)
	}
	if got, want := server(), 3; got != want {
		t.Errorf("backends of worker-r1 in pg_stat_activity: got %v, want %v", got, want)
	}
	for _, c := range conns {
		c.Close()
	}
	if err := h.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	a = db.Accounting()
	if got, want := a.ConnectionsClosed-before.ConnectionsClosed, uint64(3); got != want {
		t.Errorf("connections closed: got %v, want %v", got, want)
	}
	if got, want := a.HandlesClosed-before.HandlesClosed, uint64(1); got != want {
		t.Errorf("handles closed: got %v, want %v", got, want)
	}
	deadline := time.Now().Add(10 * time.Second)
	for server() != 0 { // a backend leaves a moment after its client closed
		if time.Now().After(deadline) {
			t.Fatalf("backends of worker-r1 after Close: got %v, want 0", server())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Ensure a handle on a server that is down fails Init naming the cause,
// without the password, and opens once the server is up.
func TestPostgres_ServerDownAtInit(t *testing.T) {
	srv := pgtest.New(t)
	u := strings.Replace(srv.URL(), "postgres@", "postgres:s3cret@", 1)
	h := db.New(db.Config{URL: u, ReplicaID: "a"})
	defer h.Close(context.Background())
	_, err := h.Init(context.Background())
	if err == nil {
		t.Fatal("Init with the server down: got nil, want an error")
	}
	if strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("Init's error has the password: %v", err)
	}
	if herr := h.Health(); herr == nil || !strings.Contains(herr.Error(), "cannot open database postgres://postgres:xxxxx@") {
		t.Fatalf("Health: got %v, want the failed open, with the URL masked", herr)
	}
	srv.Start(t)
	if _, err := h.Init(context.Background()); err != nil {
		t.Fatalf("Init once the server is up: %v", err)
	}
	if err := h.Health(); err != nil {
		t.Errorf("Health: got %v, want nil", err)
	}
}

// Ensure CheckURL refuses what pgx would not take or would send to the
// server as a setting, and RedactURL masks the password wherever it is.
func TestCheckURL(t *testing.T) {
	for _, tc := range []struct{ url, want string }{
		{"postgres://u@h/db?sslmode=disable", ""},
		{"postgresql://u:p@h:5433/db?connect_timeout=3&search_path=s", ""},
		{"postgres://u@h/db?bogus=1", `unknown parameter "bogus"`},
		{"postgres://u@h/db?application_name=x", "the worker sets it"},
		{"postgres://u@h/db?sslmode=sometimes", "sslmode"},
		{"mysql://u@h/db", `scheme "mysql"`},
		{"postgres://u:p@h:notaport/db", "not a URL"},
		{"postgres:u@h/db", "two slashes"},
	} {
		err := db.CheckURL(tc.url)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("CheckURL(%q): got %v, want nil", tc.url, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("CheckURL(%q): got %v, want an error with %q", tc.url, err, tc.want)
		case err != nil && strings.Contains(err.Error(), ":p@"):
			t.Errorf("CheckURL(%q): error has the password: %v", tc.url, err)
		}
	}
	for in, want := range map[string]string{
		"postgres://u:secret@h/db":                       "postgres://u:xxxxx@h/db",
		"postgres://u@h/db?password=secret&x=1":          "postgres://u@h/db?password=xxxxx&x=1",
		"postgres://u@h/db":                              "postgres://u@h/db",
		"postgres://u:p@h/db?sslpassword=s&sslkey=k.pem": "postgres://u:xxxxx@h/db?sslkey=k.pem&sslpassword=xxxxx",
		"postgres://u@h/db?ssl%70assword=s":              "postgres://u@h/db?sslpassword=xxxxx",
		"postgres://u@h/db?sslpassword=a;b":              "(unparsable URL)",
	} {
		if got := db.RedactURL(in); got != want {
			t.Errorf("RedactURL(%q): got %v, want %v", in, got, want)
		}
	}
	for in, want := range map[string][]string{
		"postgres://u:p@h/db?sslpassword=s": {"password", "sslpassword"},
		"postgres://u@h/db?pass%77ord=s":    {"password"},
		"postgres://u@h/db?sslmode=require": nil,
	} {
		if got := db.URLSecrets(in); !slices.Equal(got, want) {
			t.Errorf("URLSecrets(%q): got %v, want %v", in, got, want)
		}
	}
}

// Ensure worker_db_server_connections has every state, sums to the
// handle's open connections, passes the linter under a pedantic registry,
// and is absent while the handle is not open.
func TestServerCollector(t *testing.T) {
	srv := startPG(t)
	h := pgHandle(t, srv, "sc")
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(dbmetrics.NewServerCollector("worker", h))
	if n, err := testutil.GatherAndCount(reg); err != nil || n != 0 {
		t.Fatalf("before Init: got %d series (%v), want 0", n, err)
	}
	d := mustInit(t, h)
	held, err := d.Conn(context.Background()) // one in use, the scrape's on another
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Fatalf("lint: got %v (%v), want none", problems, err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	var sum float64
	for _, m := range mfs[0].GetMetric() {
		got[m.GetLabel()[0].GetValue()] = m.GetGauge().GetValue()
		sum += m.GetGauge().GetValue()
	}
	if len(got) != len(dbmetrics.ServerStates) {
		t.Errorf("states: got %v, want each of %v", got, dbmetrics.ServerStates)
	}
	if want := float64(d.Stats().OpenConnections); sum != want || got["active"] != 1 || got["idle"] != want-1 {
		t.Errorf("server connections: got %v (sum %v), want %v open: the scrape's active, the rest idle", got, sum, want)
	}
}

// waitUntil polls cond every 10 ms until it holds, for at most limit, and
// returns how long it took.
func waitUntil(t *testing.T, what string, limit time.Duration, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > limit {
			t.Fatalf("not %s within %s", what, limit)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

// backends returns the backends of application_name app in pg_stat_activity.
func backends(t *testing.T, c *pgx.Conn, app string) int {
	t.Helper()
	var n int
	if err := c.QueryRow(context.Background(), "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", app).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// Ensure Health follows the server of an open handle: ErrServerUnreachable
// naming the failed connect while the server is down, nil again once it is
// back, without a reopen, and the pool's connections those of the server.
func TestPostgres_HealthFollowsServer(t *testing.T) {
	srv := startPG(t)
	h := pgHandle(t, srv, "r1")
	d := mustInit(t, h)
	if err := h.Health(); err != nil {
		t.Fatalf("Health once open: got %v, want nil", err)
	}
	srv.Stop(t)
	noticed := waitUntil(t, "unhealthy with the server down", 10*time.Second, func() bool { return h.Health() != nil })
	if err := h.Health(); !errors.Is(err, db.ErrServerUnreachable) || !strings.Contains(err.Error(), "failed to connect") {
		t.Fatalf("Health with the server down: got %v, want ErrServerUnreachable naming the failed connect", err)
	}
	srv.Start(t)
	recovered := waitUntil(t, "healthy with the server back", 10*time.Second, func() bool { return h.Health() == nil })
	t.Logf("noticed %s after the stop; healthy %s after the start", noticed, recovered)
	if opened, _, _ := h.InitCalls(); opened != 1 {
		t.Errorf("Init calls that opened: got %v, want 1", opened)
	}
	observer := srv.Connect(t)
	waitUntil(t, "as many connections open as backends", 10*time.Second, func() bool {
		return d.Stats().OpenConnections == backends(t, observer, h.ApplicationName())
	})
}

// Ensure the idle connections that the server dropped are closed, not
// counted open for ever, and that a dropped connection alone does not make
// the handle unhealthy: database/sql only discards the broken connection it
// picks, the one returned last.
func TestPostgres_DroppedConnectionsClosed(t *testing.T) {
	srv := startPG(t)
	h := pgHandle(t, srv, "r1")
	d := mustInit(t, h)
	var conns []*sql.Conn
	for range 3 { // three idle connections once closed
		c, err := d.Conn(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	for _, c := range conns {
		c.Close()
	}
	observer := srv.Connect(t)
	if got, want := backends(t, observer, h.ApplicationName()), 3; got != want {
		t.Fatalf("backends before: got %v, want %v", got, want)
	}
	if _, err := observer.Exec(context.Background(), "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1", h.ApplicationName()); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "as many connections open as backends", 10*time.Second, func() bool {
		if err := h.Health(); err != nil {
			t.Fatalf("Health after pg_terminate_backend: got %v, want nil", err)
		}
		open := d.Stats().OpenConnections
		return open <= 1 && open == backends(t, observer, h.ApplicationName())
	})
	var one int
	if err := d.QueryRow("SELECT 1").Scan(&one); err != nil {
		t.Fatalf("a query after: %v", err)
	}
}

// Ensure PruneHeartbeats deletes the rows of replicas that have not beaten
// since the cutoff and keeps the others, and deletes nothing on SQLite,
// whose one row is the worker's own.
func TestPruneHeartbeats(t *testing.T) {
	ctx := context.Background()
	d := mustInit(t, pgHandle(t, startPG(t), "a"))
	now := time.Now()
	for id, at := range map[string]time.Time{"gone": now.Add(-2 * time.Hour), "live": now} {
		if _, err := jobhistory.WriteHeartbeat(ctx, d, jobhistory.Beat{ReplicaID: id, PID: 1, Hostname: "h", Version: "v", StartedAt: at, BeatAt: at}); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := jobhistory.PruneHeartbeats(ctx, d, now.Add(-time.Hour)); err != nil || n != 1 {
		t.Fatalf("PruneHeartbeats: got %d (%v), want 1", n, err)
	}
	var got string
	if err := d.QueryRow("SELECT string_agg(id, ',') FROM heartbeat").Scan(&got); err != nil {
		t.Fatal(err)
	}
	if want := "live"; got != want {
		t.Errorf("heartbeat rows left: got %v, want %v", got, want)
	}

	s := mustSQLite(t)
	old := now.Add(-2 * time.Hour)
	if _, err := jobhistory.WriteHeartbeat(ctx, s, jobhistory.Beat{PID: 1, Hostname: "h", Version: "v", StartedAt: old, BeatAt: old}); err != nil {
		t.Fatal(err)
	}
	if n, err := jobhistory.PruneHeartbeats(ctx, s, now); err != nil || n != 0 {
		t.Errorf("PruneHeartbeats on SQLite: got %d (%v), want 0", n, err)
	}
}
