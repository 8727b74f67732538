package worker_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/sqlworker/worker"
)

// Ensure the worker's methods answer by its phase, from New to Close:
// Register only before Open, RunNow only while started, Start refused
// after Stop, and each error saying where the worker is.
func TestWorker_Lifecycle(t *testing.T) {
	ctx := context.Background()
	w, _ := MustNewWorker(t, MustParseConfig(t, "builtin: {heartbeat: {enabled: false}, wal_checkpoint: {enabled: false}, optimize: {enabled: false}, quick_check: {enabled: false}, history_prune: {enabled: false}}"))
	fn, ran := signalJob(1, nil)
	if err := w.Register("job", "@daily", fn); err != nil {
		t.Fatalf("Register when new: got %v, want nil", err)
	}
	notRunning := func(step, want string, err error) {
		t.Helper()
		if !errors.Is(err, worker.ErrNotRunning) || !strings.Contains(err.Error(), want) {
			t.Fatalf("%s: got %v, want %v saying %q", step, err, worker.ErrNotRunning, want)
		}
	}
	_, err := w.RunNow(ctx, "job")
	notRunning("RunNow when new", "starting", err)

	if err := w.Open(ctx); err != nil {
		t.Fatalf("Open: got %v, want nil", err)
	}
	if err := w.Open(ctx); err != nil {
		t.Fatalf("Open again: got %v, want nil", err)
	}
	if err := w.Register("late", "@daily", fn); !errors.Is(err, worker.ErrStarted) {
		t.Fatalf("Register when open: got %v, want %v", err, worker.ErrStarted)
	}
	_, err = w.RunNow(ctx, "job")
	notRunning("RunNow when open", "open, not started", err)

	for i := range 2 {
		if err := w.Start(ctx); err != nil {
			t.Fatalf("Start %d: got %v, want nil", i, err)
		}
	}
	if r, err := w.RunNow(ctx, "job"); err != nil || r.Result != worker.ResultSuccess {
		t.Fatalf("RunNow when started: got %v, %v, want a success", r.Result, err)
	}
	wait(t, ran, "the run")

	if err := w.Stop(ctx); err != nil {
		t.Fatalf("Stop: got %v, want nil", err)
	}
	_, err = w.RunNow(ctx, "job")
	notRunning("RunNow when stopped", "shutting down", err)
	if err := w.Start(ctx); !errors.Is(err, worker.ErrStopped) {
		t.Fatalf("Start when stopped: got %v, want %v", err, worker.ErrStopped)
	}
	if err := w.Open(ctx); !errors.Is(err, worker.ErrStopped) {
		t.Fatalf("Open when stopped: got %v, want %v", err, worker.ErrStopped)
	}
	for i := range 2 {
		if err := w.Close(ctx); err != nil {
			t.Fatalf("Close %d: got %v, want nil", i, err)
		}
	}
	_, err = w.RunNow(ctx, "job")
	notRunning("RunNow when closed", "shutting down", err)
}
