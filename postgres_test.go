package worker_test

import (
	"context"
	"database/sql"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/sqlworker/worker"
	"github.com/sqlworker/worker/internal/pgtest"
	"github.com/sqlworker/worker/internal/web"
)

// Ensure New refuses a config built in Go that enables a SQLite-only
// built-in on PostgreSQL, naming it, and takes one parsed with database.url.
func TestNew_PostgresBuiltins(t *testing.T) {
	cfg := worker.DefaultConfig()
	cfg.DBURL = "postgres://u@h/db"
	w, err := worker.New(worker.Options{Config: cfg}) // SQLite's defaults and built-ins left out
	if err != nil {
		t.Fatalf("New of DefaultConfig with DBURL: %v", err)
	}
	w.Close(context.Background())
	cfg.Jobs = []worker.JobConfig{{Name: worker.BuiltinHeartbeat, Builtin: true}, {Name: worker.BuiltinWALCheckpoint, Builtin: true}}
	_, err = worker.New(worker.Options{Config: cfg})
	if want := `worker: job "wal_checkpoint": Config.Jobs[1]: is SQLite's; not offered with database.url (remove it)`; err == nil || err.Error() != want {
		t.Fatalf("got %v, want %s", err, want)
	}
	cfg, err = worker.ParseConfig([]byte("database:\n  url: postgres://u@h/db\n"))
	if err != nil {
		t.Fatal(err)
	}
	w, err = worker.New(worker.Options{Config: cfg})
	if err != nil {
		t.Fatalf("New of a parsed PostgreSQL config: %v", err)
	}
	w.Close(context.Background())
}

// Ensure a library Worker on PostgreSQL opens while its server is down, is
// not ready with the cause, and runs its Go job once the server is up.
func TestWorker_PostgresServerDown(t *testing.T) {
	srv := pgtest.New(t)
	cfg, err := worker.ParseConfig([]byte("database:\n  url: '" + srv.URL() + "'\n  replica_id: lib\nbuiltin:\n  heartbeat: {enabled: false}\n  history_prune: {enabled: false}\n"))
	if err != nil {
		t.Fatal(err)
	}
	w, _ := MustNewWorker(t, cfg)
	ran := make(chan struct{}, 1)
	if err := w.Register("ping", "@every 1s", func(ctx context.Context, db *sql.DB) (int64, error) {
		if err := db.PingContext(ctx); err != nil {
			return 0, err
		}
		select {
		case ran <- struct{}{}:
		default:
		}
		return 0, nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := w.Start(context.Background()); err != nil {
		t.Fatalf("Start with the server down: got %v, want nil", err)
	}
	h, err := w.Handler(worker.HandlerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
	if rec.Code != 503 || !strings.Contains(rec.Body.String(), "database: database is not open: cannot open database postgres://") {
		t.Fatalf("/readyz with the server down: got %d %q, want 503 naming the database", rec.Code, rec.Body.String())
	}
	srv.Start(t)
	select {
	case <-ran:
	case <-time.After(30 * time.Second):
		t.Fatal("the Go job did not run within 30 s of the server starting")
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
	if rec.Code != 200 {
		t.Errorf("/readyz once the server is up: got %d %q, want 200", rec.Code, rec.Body.String())
	}
}

// Ensure that two library Workers on one PostgreSQL database claim each
// tick of a job, so that its body runs once per tick across them.
func TestWorker_PostgresReplicasRunEachTickOnce(t *testing.T) {
	srv := pgtest.New(t)
	srv.Start(t)
	var mu sync.Mutex
	bodies := 0
	var ws []*worker.Worker
	for _, id := range []string{"r1", "r2"} {
		cfg, err := worker.ParseConfig([]byte("database:\n  url: '" + srv.URL() + "'\n  replica_id: " + id +
			"\nbuiltin:\n  heartbeat: {enabled: false}\n  history_prune: {enabled: false}\n"))
		if err != nil {
			t.Fatal(err)
		}
		w, _ := MustNewWorker(t, cfg)
		if err := w.Register("tick", "@every 1s", func(context.Context, *sql.DB) (int64, error) {
			mu.Lock()
			bodies++
			mu.Unlock()
			return 0, nil
		}); err != nil {
			t.Fatal(err)
		}
		ws = append(ws, w)
	}
	for _, w := range ws {
		if err := w.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	pc, err := pgx.ParseConfig(srv.DSN())
	if err != nil {
		t.Fatal(err)
	}
	check := sql.OpenDB(stdlib.GetConnector(*pc))
	defer check.Close()
	deadline := time.Now().Add(30 * time.Second)
	for n := 0; n < 3; {
		// job_claims appears with the first claim.
		_ = check.QueryRow(`SELECT count(*) FROM job_claims WHERE job = 'tick' AND status = 'succeeded'`).Scan(&n)
		if time.Now().After(deadline) {
			t.Fatalf("succeeded ticks: got %v after 30s, want 3", n)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, w := range ws {
		if err := w.Stop(context.Background()); err != nil {
			t.Errorf("Stop: %v", err)
		}
	}
	var succeeded, owners int
	if err := check.QueryRow(`SELECT count(*), count(DISTINCT owner) FROM job_claims WHERE job = 'tick' AND status = 'succeeded'`).
		Scan(&succeeded, &owners); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if bodies != succeeded {
		t.Errorf("bodies run: got %v, want %v (one per succeeded tick)", bodies, succeeded)
	}
	if owners < 1 || owners > 2 {
		t.Errorf("owners: got %v, want the replicas' application_name", owners)
	}
}

// Ensure history_prune on PostgreSQL also prunes the per-tick claims older
// than the retention, keeping each job's newest, as claim.Prune does.
func TestWorker_PostgresHistoryPrunePrunesClaims(t *testing.T) {
	srv := pgtest.New(t)
	srv.Start(t)
	cfg := MustParseConfig(t, "database:\n  url: '"+srv.URL()+"'\n  replica_id: lib\nhistory:\n  retention: 1h\n"+
		"builtin:\n  heartbeat: {enabled: false}\n  history_prune: {schedule: '@yearly'}\n")
	w, reg := MustNewWorker(t, cfg)
	hs := mustAdminServer(t, w, reg)
	if err := w.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Before any tick was claimed: the handle created job_claims on open.
	var run web.RunRecord
	if got, want := call(t, hs, "POST", "/api/v1/jobs/history_prune/run", &run), 200; got != want || run.Result != "success" {
		t.Fatalf("history_prune before any claim: got %v %+v, want %v and success", got, run, want)
	}
	pc, err := pgx.ParseConfig(srv.DSN())
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(stdlib.GetConnector(*pc))
	defer db.Close()
	for _, hours := range []int{5, 3, 0} {
		if _, err := db.Exec(`INSERT INTO job_claims (job, scheduled_at, owner, attempt, lease_until, status, started_at)
VALUES ('a', now() - $1 * interval '1 hour', 'x', 1, now(), 'succeeded', now())`, hours); err != nil {
			t.Fatal(err)
		}
	}
	run = web.RunRecord{}
	if got, want := call(t, hs, "POST", "/api/v1/jobs/history_prune/run", &run), 200; got != want {
		t.Fatalf("run history_prune: got %v, want %v", got, want)
	}
	if run.Result != "success" {
		t.Fatalf("history_prune: got %+v, want success", run)
	}
	var left int
	if err := db.QueryRow(`SELECT count(*) FROM job_claims WHERE job = 'a'`).Scan(&left); err != nil {
		t.Fatal(err)
	}
	if got, want := left, 1; got != want {
		t.Errorf("claims of a left: got %v, want %v (the two older than the 1h retention pruned)", got, want)
	}
	if got, want := run.RowsAffected, int64(2); got < want {
		t.Errorf("rows pruned: got %v, want ≥ %v", got, want)
	}
}
