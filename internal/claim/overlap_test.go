package claim_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sqlworker/worker/internal/claim"
	"github.com/sqlworker/worker/internal/jobs"
)

// acquireAsync acquires t through co in the background.
func acquireAsync(co *claim.Coordinator, t jobs.Tick) <-chan error {
	out := make(chan error, 1)
	go func() {
		c, err := co.Acquire(context.Background(), t)
		if err == nil {
			c.Keep(context.Background())
			err = c.Release(context.Background(), nil)
		}
		out <- err
	}()
	return out
}

// waitStatus polls until the tick's claim has the status.
func waitStatus(t *testing.T, dsn, job string, tick time.Time, status string) {
	t.Helper()
	db := open(t, dsn)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if r, ok := readRow(t, db, job, tick); ok && r.status == status {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("tick %s of %s: not %s within 10s", tick.Format(time.TimeOnly), job, status)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Ensure a tick that finds the job running on another replica under
// buffer_one is buffered and runs once that run ended, and that a third
// tick, while one is buffered, is skipped (ErrSkipped, a 'skipped' row).
func TestCoordinator_BufferOne(t *testing.T) {
	t.Parallel()
	dsn := server(t)
	cfg := claim.Config{Lease: time.Second}
	co := func(owner string) *claim.Coordinator {
		return claim.NewCoordinator(replica(t, dsn, owner, cfg), []string{"j"})
	}
	a, b, c := co("a"), co("b"), co("c")
	t0 := time.Now().Add(-3 * time.Second).Truncate(time.Second)
	tick := func(i int) jobs.Tick {
		return jobs.Tick{Job: "j", ScheduledAt: t0.Add(time.Duration(i) * time.Second), Attempt: 1, Overlap: jobs.OverlapBufferOne}
	}
	running, err := a.Acquire(context.Background(), tick(0))
	if err != nil {
		t.Fatal(err)
	}
	running.Keep(context.Background())
	second := acquireAsync(b, tick(1))
	waitStatus(t, dsn, "j", tick(1).ScheduledAt, "buffered")
	if _, err := c.Acquire(context.Background(), tick(2)); !errors.Is(err, jobs.ErrSkipped) {
		t.Fatalf("third tick while one is buffered: got %v, want ErrSkipped", err)
	}
	select {
	case err := <-second:
		t.Fatalf("buffered tick ended before the running one: %v", err)
	default:
	}
	if err := running.Release(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	if err := <-second; err != nil {
		t.Fatalf("buffered tick: %v", err)
	}
	db := open(t, dsn)
	for i, want := range []string{"succeeded", "succeeded", "skipped"} {
		if r, _ := readRow(t, db, "j", tick(i).ScheduledAt); r.status != want {
			t.Errorf("tick %d: got %q, want %q", i, r.status, want)
		}
	}
}

// Ensure a tick under replace asks the run of another replica to stop: its
// owner's renewal cancels the run's context with cause jobs.ErrReplaced, and
// the new tick runs once the old one was released; a newer tick under
// replace displaces a buffered one, which is skipped.
func TestCoordinator_Replace(t *testing.T) {
	t.Parallel()
	dsn := server(t)
	cfg := claim.Config{Lease: time.Second}
	co := func(owner string) *claim.Coordinator {
		return claim.NewCoordinator(replica(t, dsn, owner, cfg), []string{"j"})
	}
	a, b, c := co("a"), co("b"), co("c")
	t0 := time.Now().Add(-3 * time.Second).Truncate(time.Second)
	tick := func(i int) jobs.Tick {
		return jobs.Tick{Job: "j", ScheduledAt: t0.Add(time.Duration(i) * time.Second), Attempt: 1, Overlap: jobs.OverlapReplace}
	}
	running, err := a.Acquire(context.Background(), tick(0))
	if err != nil {
		t.Fatal(err)
	}
	runCtx := running.Keep(context.Background())
	second := acquireAsync(b, tick(1))
	waitStatus(t, dsn, "j", tick(1).ScheduledAt, "buffered")
	third := acquireAsync(c, tick(2))
	if err := <-second; !errors.Is(err, jobs.ErrSkipped) {
		t.Fatalf("buffered tick a newer one replaced: got %v, want ErrSkipped", err)
	}
	select {
	case <-runCtx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the running run was not cancelled within 5s")
	}
	if cause := context.Cause(runCtx); !errors.Is(cause, jobs.ErrReplaced) {
		t.Fatalf("cause: got %v, want %v", cause, jobs.ErrReplaced)
	}
	if err := running.Release(context.Background(), jobs.ErrReplaced); err != nil {
		t.Fatal(err)
	}
	if err := <-third; err != nil {
		t.Fatalf("replacing tick: %v", err)
	}
	db := open(t, dsn)
	for i, want := range []string{"failed", "skipped", "succeeded"} {
		if r, _ := readRow(t, db, "j", tick(i).ScheduledAt); r.status != want {
			t.Errorf("tick %d: got %q, want %q", i, r.status, want)
		}
	}
}
