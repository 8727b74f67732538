package worker_test

import (
	"context"
	"database/sql"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/sqlworker/worker"
	"github.com/sqlworker/worker/internal/workertest"
	"github.com/sqlworker/worker/jobtest"
)

// Ensure RunNow runs a job through the chain and returns its record, which
// job_runs and the run hook have too; and returns its sentinels: not
// running before Start and after Stop, unknown, running with the skipped
// run's record, and ctx's error while the run goes on.
func TestWorker_RunNow(t *testing.T) {
	cfg := MustParseConfig(t, workertest.BuiltinsOff)
	rec := jobtest.NewRecorder()
	w, err := worker.New(worker.Options{Config: cfg, OnRun: rec.OnRun})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close(context.Background())
	started, release := make(chan struct{}, 1), make(chan struct{})
	err = w.Register("block", "@yearly", func(ctx context.Context, db *sql.DB) (int64, error) {
		started <- struct{}{}
		<-release
		return 3, db.PingContext(ctx)
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := workertest.CtxTimeout(t, 30*time.Second)
	if _, err := w.RunNow(ctx, "block"); !errors.Is(err, worker.ErrNotRunning) {
		t.Fatalf("RunNow before Start: got %v, want ErrNotRunning", err)
	}
	if err := w.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := w.RunNow(ctx, "nope"); !errors.Is(err, worker.ErrUnknownJob) {
		t.Errorf("RunNow of an unknown job: got %v, want ErrUnknownJob", err)
	}

	// A run whose wait ctx gives up goes on; a second run meanwhile is skipped.
	waitCtx, cancel := context.WithCancel(ctx)
	first := make(chan error, 1)
	go func() { _, err := w.RunNow(waitCtx, "block"); first <- err }()
	<-started
	skipped, err := w.RunNow(ctx, "block")
	if !errors.Is(err, worker.ErrJobRunning) || skipped.Result != worker.ResultSkipped {
		t.Errorf("RunNow while running: got %v, %q, want ErrJobRunning, skipped", err, skipped.Result)
	}
	cancel()
	if err := <-first; !errors.Is(err, context.Canceled) {
		t.Errorf("RunNow with its ctx cancelled: got %v, want context.Canceled", err)
	}
	close(release)
	for _, want := range []worker.Result{worker.ResultSkipped, worker.ResultSuccess} {
		r, err := rec.Wait(ctx, "block")
		if err != nil {
			t.Fatal(err)
		}
		if r.Result != want {
			t.Errorf("hook: got %s, want %s", r.Result, want)
		}
	}

	go func() { <-started }()
	r, err := w.RunNow(ctx, "block")
	if err != nil {
		t.Fatal(err)
	}
	if r.Job != "block" || r.Result != worker.ResultSuccess || r.RowsAffected != 3 || r.Err != nil || r.Attempt != 1 || r.EndedAt.Before(r.StartedAt) {
		t.Errorf("RunNow: got %+v, want a success of block with 3 rows", r)
	}
	if got, err := rec.Wait(ctx, "block"); err != nil || got.EndedAt != r.EndedAt {
		t.Errorf("hook: got %+v, %v, want RunNow's record %+v", got, err, r)
	}
	if err := w.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := w.RunNow(ctx, "block"); !errors.Is(err, worker.ErrNotRunning) {
		t.Errorf("RunNow after Stop: got %v, want ErrNotRunning", err)
	}
	if got, want := runs(t, cfg.DBPath, "block"), []string{"skipped 0", "success 3", "success 3"}; !slices.Equal(got, want) {
		t.Errorf("job_runs: got %q, want %q", got, want)
	}
}

// Ensure a run hook that blocks holds up neither the runs nor the
// scheduler, gets every record in the order the runs finished once it
// unblocks, and is waited for by Stop.
func TestWorker_OnRun_Blocked(t *testing.T) {
	cfg := MustParseConfig(t, workertest.BuiltinsOff)
	unblock := make(chan struct{})
	got := make(chan worker.RunRecord, 10)
	w, err := worker.New(worker.Options{Config: cfg, OnRun: func(r worker.RunRecord) {
		<-unblock
		got <- r
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close(context.Background())
	for _, name := range []string{"a", "b", "c"} {
		if err := w.Register(name, "@yearly", func(context.Context, *sql.DB) (int64, error) { return 1, nil }); err != nil {
			t.Fatal(err)
		}
	}
	ctx := workertest.CtxTimeout(t, 30*time.Second)
	if err := w.Start(ctx); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"a", "b", "c"} {
		if _, err := w.RunNow(ctx, name); err != nil { // returns although the hook blocks
			t.Fatal(err)
		}
	}
	close(unblock)
	if err := w.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(got); n != 3 {
		t.Fatalf("records given to the hook by Stop: got %d, want 3", n)
	}
	for _, want := range []string{"a", "b", "c"} {
		if r := <-got; r.Job != want {
			t.Errorf("hook order: got %s, want %s", r.Job, want)
		}
	}
}

// Ensure Stop waits for a blocked hook only until its ctx is done, and a
// panicking hook is recovered: the worker goes on.
func TestWorker_OnRun_StopCtx(t *testing.T) {
	cfg := MustParseConfig(t, workertest.BuiltinsOff)
	unblock, entered := make(chan struct{}), make(chan struct{}, 10)
	w, err := worker.New(worker.Options{Config: cfg, OnRun: func(r worker.RunRecord) {
		entered <- struct{}{}
		if r.Job == "panics" {
			panic("hook")
		}
		<-unblock
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close(context.Background())
	defer close(unblock) // before Close: the hook's goroutine ends
	for _, name := range []string{"panics", "blocks"} {
		if err := w.Register(name, "@yearly", func(context.Context, *sql.DB) (int64, error) { return 0, nil }); err != nil {
			t.Fatal(err)
		}
	}
	ctx := workertest.CtxTimeout(t, 30*time.Second)
	if err := w.Start(ctx); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"panics", "blocks"} {
		if _, err := w.RunNow(ctx, name); err != nil {
			t.Fatal(err)
		}
		<-entered // the second record reaches the hook: the panic did not end it
	}
	done, cancel := context.WithCancel(ctx)
	cancel()
	if err := w.Stop(done); err != nil { // returns although the hook blocks
		t.Fatal(err)
	}
}
