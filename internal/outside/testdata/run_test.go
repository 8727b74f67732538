// A test of a module outside the worker's: it runs a Go job with RunNow and
// waits on the run hook, then drives a schedule with jobtest, and checks
// the records in job_runs. No sleeps: every wait is on a signal.
package embed_test

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3" // reads job_runs
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sqlworker/worker"
	"github.com/sqlworker/worker/jobtest"
)

func newWorker(t *testing.T, onRun func(worker.RunRecord)) (*worker.Worker, string) {
	t.Helper()
	cfg := worker.DefaultConfig()
	cfg.DBPath = filepath.Join(t.TempDir(), "app.db")
	cfg.Location = time.UTC
	w, err := worker.New(worker.Options{Config: cfg, Registerer: prometheus.NewRegistry(), OnRun: onRun})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := w.Close(context.Background()); err != nil {
			t.Error(err)
		}
	})
	err = w.Register("expire_sessions", "@daily", func(ctx context.Context, db *sql.DB) (int64, error) {
		if _, err := db.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS sessions (expires_at INTEGER)"); err != nil {
			return 0, err
		}
		if _, err := db.ExecContext(ctx, "INSERT INTO sessions VALUES (0), (0), (unixepoch() + 3600)"); err != nil {
			return 0, err
		}
		res, err := db.ExecContext(ctx, "DELETE FROM sessions WHERE expires_at < unixepoch()")
		if err != nil {
			return 0, err
		}
		return res.RowsAffected()
	})
	if err != nil {
		t.Fatal(err)
	}
	return w, cfg.DBPath
}

// jobRuns returns the job's job_runs rows as "scheduled_at result rows".
func jobRuns(t *testing.T, path, job string) []string {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query("SELECT scheduled_at || ' ' || result || ' ' || rows_affected FROM job_runs WHERE job = ? ORDER BY id", job)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// A job run with RunNow: its record, the hook's, and its job_runs row agree.
func TestRunNow(t *testing.T) {
	hook := make(chan worker.RunRecord, 100)
	w, path := newWorker(t, func(r worker.RunRecord) {
		if r.Job == "expire_sessions" {
			hook <- r
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := w.RunNow(ctx, "expire_sessions"); !errors.Is(err, worker.ErrNotRunning) {
		t.Fatalf("RunNow before Start: got %v, want worker.ErrNotRunning", err)
	}
	if err := w.Start(ctx); err != nil {
		t.Fatal(err)
	}
	r, err := w.RunNow(ctx, "expire_sessions")
	if err != nil {
		t.Fatal(err)
	}
	if r.Result != worker.ResultSuccess || r.RowsAffected != 2 {
		t.Errorf("RunNow: got %s with %d rows, want success with 2", r.Result, r.RowsAffected)
	}
	var got worker.RunRecord
	select {
	case got = <-hook:
	case <-ctx.Done():
		t.Fatal("no record from the run hook")
	}
	if !got.StartedAt.Equal(r.StartedAt) || got.RowsAffected != r.RowsAffected {
		t.Errorf("hook: got %+v, want RunNow's %+v", got, r)
	}
	if err := w.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	rows := jobRuns(t, path, "expire_sessions")
	if len(rows) != 1 || rows[0][len(rows[0])-len("success 2"):] != "success 2" {
		t.Errorf("job_runs: got %q, want one success with 2 rows", rows)
	}
}

// A daily schedule driven by hand: two ticks run now, each recorded with
// its scheduled time.
func TestRunTick(t *testing.T) {
	rec := jobtest.NewRecorder()
	w, path := newWorker(t, rec.OnRun)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := w.Open(ctx); err != nil {
		t.Fatal(err)
	}
	ticks, err := jobtest.Ticks(w, "expire_sessions", time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC), 2)
	if err != nil {
		t.Fatal(err)
	}
	for _, at := range ticks {
		if _, err := jobtest.RunTick(ctx, w, "expire_sessions", at); err != nil {
			t.Fatal(err)
		}
		r, err := rec.Wait(ctx, "expire_sessions")
		if err != nil {
			t.Fatal(err)
		}
		if !r.ScheduledAt.Equal(at) {
			t.Errorf("hook: got scheduled_at %v, want %v", r.ScheduledAt, at)
		}
	}
	got := jobRuns(t, path, "expire_sessions")
	want := []string{"2026-01-02T00:00:00.000Z success 2", "2026-01-03T00:00:00.000Z success 2"}
	if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("job_runs: got %q, want %q", got, want)
	}
}
