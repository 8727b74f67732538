package jobtest_test

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sqlworker/worker"
	"github.com/sqlworker/worker/internal/workertest"
	"github.com/sqlworker/worker/jobtest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// Ensure RunTick drives a schedule by hand on a worker that is open but not
// started: each tick Ticks gives runs now, is recorded in job_runs with
// its scheduled time and handed to the hook, and nothing else runs.
func TestRunTick(t *testing.T) {
	cfg, err := worker.ParseConfig([]byte(workertest.BuiltinsOff))
	if err != nil {
		t.Fatal(err)
	}
	cfg.DBPath = filepath.Join(t.TempDir(), "w.db")
	cfg.Location = time.UTC
	rec := jobtest.NewRecorder()
	w, err := worker.New(worker.Options{Config: cfg, OnRun: rec.OnRun})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close(context.Background())
	n := int64(0)
	err = w.Register("rollup", "0 2 * * *", func(ctx context.Context, db *sql.DB) (int64, error) {
		n++
		return n, db.PingContext(ctx)
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := workertest.CtxTimeout(t, 30*time.Second)
	if _, err := jobtest.RunTick(ctx, w, "rollup", time.Now()); !errors.Is(err, worker.ErrNotRunning) {
		t.Fatalf("RunTick before Open: got %v, want ErrNotRunning", err)
	}
	if err := w.Open(ctx); err != nil {
		t.Fatal(err)
	}
	from := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	ticks, err := jobtest.Ticks(w, "rollup", from, 2)
	if err != nil {
		t.Fatal(err)
	}
	if want := []time.Time{from.Add(14 * time.Hour), from.Add(38 * time.Hour)}; len(ticks) != 2 || !ticks[0].Equal(want[0]) || !ticks[1].Equal(want[1]) {
		t.Fatalf("Ticks: got %v, want %v", ticks, want)
	}
	for i, at := range ticks {
		r, err := jobtest.RunTick(ctx, w, "rollup", at)
		if err != nil {
			t.Fatal(err)
		}
		if !r.ScheduledAt.Equal(at) || r.Result != worker.ResultSuccess || r.RowsAffected != int64(i+1) {
			t.Errorf("RunTick %v: got %+v, want a success at it with %d rows", at, r, i+1)
		}
		got, err := rec.Wait(ctx, "rollup")
		if err != nil {
			t.Fatal(err)
		}
		if !got.ScheduledAt.Equal(at) {
			t.Errorf("hook: got scheduled_at %v, want %v", got.ScheduledAt, at)
		}
	}
	if _, err := jobtest.RunTick(ctx, w, "nope", from); !errors.Is(err, worker.ErrUnknownJob) {
		t.Errorf("RunTick of an unknown job: got %v, want ErrUnknownJob", err)
	}
	if _, err := jobtest.Ticks(w, "nope", from, 1); !errors.Is(err, worker.ErrUnknownJob) {
		t.Errorf("Ticks of an unknown job: got %v, want ErrUnknownJob", err)
	}
	if err := w.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	db := workertest.OpenDB(t, cfg.DBPath, "mode=ro")
	got := workertest.Strings(t, db, "SELECT scheduled_at || ' ' || result || ' ' || rows_affected FROM job_runs WHERE job = 'rollup' ORDER BY id")
	want := []string{"2026-03-02T02:00:00.000Z success 1", "2026-03-03T02:00:00.000Z success 2"}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("job_runs: got %q, want %q", got, want)
	}
	if got := len(rec.Runs()); got != 2 {
		t.Errorf("runs recorded: got %d, want 2 (nothing but the ticks run)", got)
	}
	if _, err := jobtest.RunTick(ctx, w, "rollup", from); !errors.Is(err, worker.ErrNotRunning) {
		t.Errorf("RunTick after Stop: got %v, want ErrNotRunning", err)
	}
}

// Ensure Wait returns each record once, oldest first, per job, and gives
// up when its ctx is done.
func TestRecorder_Wait(t *testing.T) {
	var rc jobtest.Recorder
	rc.OnRun(worker.RunRecord{Job: "a", Attempt: 1})
	rc.OnRun(worker.RunRecord{Job: "b"})
	rc.OnRun(worker.RunRecord{Job: "a", Attempt: 2})
	ctx := context.Background()
	for _, want := range []int{1, 2} {
		if r, err := rc.Wait(ctx, "a"); err != nil || r.Attempt != want {
			t.Errorf("Wait a: got %+v, %v, want attempt %d", r, err, want)
		}
	}
	if r, err := rc.Wait(ctx, ""); err != nil || r.Job != "a" {
		t.Errorf("Wait any: got %+v, %v, want the first record", r, err)
	}
	done, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := rc.Wait(done, "a"); !errors.Is(err, context.Canceled) {
		t.Errorf("Wait with no record left: got %v, want context.Canceled", err)
	}
	later := make(chan worker.RunRecord)
	go func() {
		r, _ := rc.Wait(ctx, "c") // before or after the record: either way it gets it
		later <- r
	}()
	rc.OnRun(worker.RunRecord{Job: "c", RowsAffected: 7})
	if r := <-later; r.RowsAffected != 7 {
		t.Errorf("Wait c: got %+v, want the record given after", r)
	}
}
