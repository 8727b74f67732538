package jobtest_test

import (
	"context"
	"database/sql"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sqlworker/worker"
	"github.com/sqlworker/worker/internal/pgtest"
	"github.com/sqlworker/worker/jobtest"
)

// Ensure RunTick claims the tick on PostgreSQL as a cron tick does: of two
// replicas that run the same tick by hand, the second finds it claimed
// (ErrNotClaimed) and does not run the body; the next tick runs there.
func TestRunTick_PostgresClaims(t *testing.T) {
	srv := pgtest.New(t)
	srv.Start(t)
	var bodies atomic.Int64
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var ws []*worker.Worker
	for _, id := range []string{"r1", "r2"} {
		cfg, err := worker.ParseConfig([]byte("database:\n  url: '" + srv.URL() + "'\n  replica_id: " + id +
			"\nbuiltin:\n  heartbeat: {enabled: false}\n  history_prune: {enabled: false}\n"))
		if err != nil {
			t.Fatal(err)
		}
		w, err := worker.New(worker.Options{Config: cfg})
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close(context.Background())
		if err := w.Register("rollup", "0 * * * *", func(ctx context.Context, db *sql.DB) (int64, error) {
			bodies.Add(1)
			return 0, db.PingContext(ctx)
		}); err != nil {
			t.Fatal(err)
		}
		if err := w.Open(ctx); err != nil {
			t.Fatal(err)
		}
		ws = append(ws, w)
	}
	at := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	if r, err := jobtest.RunTick(ctx, ws[0], "rollup", at); err != nil || r.Result != worker.ResultSuccess {
		t.Fatalf("RunTick on r1: got %+v, %v, want a success", r, err)
	}
	if r, err := jobtest.RunTick(ctx, ws[1], "rollup", at); !errors.Is(err, jobtest.ErrNotClaimed) {
		t.Errorf("RunTick of the same tick on r2: got %+v, %v, want ErrNotClaimed", r, err)
	}
	if r, err := jobtest.RunTick(ctx, ws[1], "rollup", at.Add(time.Hour)); err != nil || r.Result != worker.ResultSuccess {
		t.Errorf("RunTick of the next tick on r2: got %+v, %v, want a success", r, err)
	}
	if got, want := bodies.Load(), int64(2); got != want {
		t.Errorf("bodies run: got %d, want %d (one per tick)", got, want)
	}
}
