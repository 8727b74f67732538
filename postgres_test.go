package worker_test

import (
	"context"
	"database/sql"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sqlworker/worker"
	"github.com/sqlworker/worker/internal/pgtest"
)

// Ensure New refuses a config built in Go that enables a SQLite-only
// built-in on PostgreSQL, naming it, and takes one parsed with database.url.
func TestNew_PostgresBuiltins(t *testing.T) {
	cfg := worker.DefaultConfig()
	cfg.DBURL = "postgres://u@h/db"
	if _, err := worker.New(worker.Options{Config: cfg}); err == nil || !strings.Contains(err.Error(), "builtin.wal_checkpoint: is SQLite's") {
		t.Fatalf("got %v, want builtin.wal_checkpoint refused", err)
	}
	cfg, err := worker.ParseConfig([]byte("database:\n  url: postgres://u@h/db\n"))
	if err != nil {
		t.Fatal(err)
	}
	w, err := worker.New(worker.Options{Config: cfg})
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
