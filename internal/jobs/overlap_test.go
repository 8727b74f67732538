package jobs_test

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sqlworker/worker/internal/db"
	"github.com/sqlworker/worker/internal/jobs"
	"github.com/sqlworker/worker/internal/workertest"
)

// held is a job body that signals each start and holds the run until
// release is closed or, when it honours its context, the context is done.
// It counts the runs going at once.
type held struct {
	started  chan int // the run's number, from 1
	release  chan struct{}
	honour   bool
	n, going atomic.Int32
	most     atomic.Int32
	causes   chan error // the context's cause of each run that saw it done
}

func newHeld(honour bool) *held {
	return &held{started: make(chan int, 10), release: make(chan struct{}), honour: honour, causes: make(chan error, 10)}
}

func (h *held) fn(ctx context.Context, _ *sql.DB) (int64, error) {
	g := h.going.Add(1)
	defer h.going.Add(-1)
	for m := h.most.Load(); g > m && !h.most.CompareAndSwap(m, g); m = h.most.Load() {
	}
	n := h.n.Add(1)
	h.started <- int(n)
	if n > 1 {
		return 0, nil // only the first run is held
	}
	if !h.honour {
		<-h.release
		return 0, nil
	}
	select {
	case <-h.release:
		return 0, nil
	case <-ctx.Done():
		h.causes <- context.Cause(ctx)
		return 0, ctx.Err()
	}
}

// runAsync runs the job through RunOnce in the background.
func runAsync(s *jobs.Scheduler, name string) <-chan *jobs.Run {
	out := make(chan *jobs.Run, 1)
	go func() {
		r, err := s.RunOnce(name)
		if err != nil {
			r = &jobs.Run{Err: err}
		}
		out <- r
	}()
	return out
}

// waitWaiting polls until a run of the job waits for its slot.
func waitWaiting(t *testing.T, s *jobs.Scheduler, name string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !s.Waiting(name) {
		if time.Now().After(deadline) {
			t.Fatal("no run waits for the job's slot")
		}
		time.Sleep(time.Millisecond)
	}
}

// sorted returns the results of a job's job_runs rows, sorted: rows are
// written as runs end, by a writer of their own, and times are to the ms.
func sorted(t *testing.T, h *db.Handle, name string) []string {
	t.Helper()
	d, err := h.Init(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return workertest.Strings(t, d, "SELECT result FROM job_runs WHERE job = ? ORDER BY result", name)
}

func overlapJob(t *testing.T, name string, p jobs.Overlap, fn jobs.Func) jobs.Job {
	j := job(t, name, fn)
	j.Overlap = p
	return j
}

// Ensure buffer_one makes one run wait for the running one and start when
// it ends, and skips a run that comes while one waits.
func TestOverlap_BufferOne(t *testing.T) {
	h := newHeld(false)
	s, dbh, reg := setup(t, jobs.Config{}, overlapJob(t, "buf", jobs.OverlapBufferOne, h.fn))
	first := runAsync(s, "buf")
	<-h.started
	second := runAsync(s, "buf")
	waitWaiting(t, s, "buf")
	if r := <-runAsync(s, "buf"); r.Result != jobs.Skipped {
		t.Fatalf("third run, while one waits: got %s (%v), want %s", r.Result, r.Err, jobs.Skipped)
	}
	select {
	case r := <-second:
		t.Fatalf("buffered run ended before the running one: %s", r.Result)
	default:
	}
	close(h.release)
	r1, r2 := <-first, <-second
	for i, r := range []*jobs.Run{r1, r2} {
		if r.Result != jobs.Success {
			t.Fatalf("run %d: got %s (%v), want %s", i+1, r.Result, r.Err, jobs.Success)
		}
	}
	if r2.StartedAt.Before(r1.EndedAt) {
		t.Fatalf("buffered run started at %s, before the running one ended at %s", r2.StartedAt, r1.EndedAt)
	}
	if got, want := h.most.Load(), int32(1); got != want {
		t.Fatalf("runs at once: got %d, want %d", got, want)
	}
	if got, want := runs(t, reg, "buf", jobs.Skipped), 1.0; got != want {
		t.Fatalf("runs_total{skipped}: got %v, want %v", got, want)
	}
	got := strings.Join(sorted(t, dbh, "buf"), ",")
	if want := "skipped,success,success"; got != want {
		t.Fatalf("history: got %q, want %q", got, want)
	}
}

// Ensure replace cancels the running run, with cause ErrReplaced, records
// it cancelled, and starts the new run once the old one returned.
func TestOverlap_Replace(t *testing.T) {
	h := newHeld(true)
	s, dbh, reg := setup(t, jobs.Config{}, overlapJob(t, "rep", jobs.OverlapReplace, h.fn))
	first := runAsync(s, "rep")
	<-h.started
	second := runAsync(s, "rep")
	if cause := <-h.causes; !errors.Is(cause, jobs.ErrReplaced) {
		t.Fatalf("cause of the replaced run's context: got %v, want %v", cause, jobs.ErrReplaced)
	}
	r1, r2 := <-first, <-second
	if r1.Result != jobs.Cancelled || !errors.Is(r1.Err, jobs.ErrReplaced) {
		t.Fatalf("replaced run: got %s (%v), want %s wrapping %v", r1.Result, r1.Err, jobs.Cancelled, jobs.ErrReplaced)
	}
	if r2.Result != jobs.Success {
		t.Fatalf("new run: got %s (%v), want %s", r2.Result, r2.Err, jobs.Success)
	}
	if got, want := h.most.Load(), int32(1); got != want {
		t.Fatalf("runs at once: got %d, want %d", got, want)
	}
	if got, want := runs(t, reg, "rep", jobs.Cancelled), 1.0; got != want {
		t.Fatalf("runs_total{cancelled}: got %v, want %v", got, want)
	}
	if r2.StartedAt.Before(r1.EndedAt) {
		t.Fatalf("new run started at %s, before the replaced one ended at %s", r2.StartedAt, r1.EndedAt)
	}
	got := strings.Join(sorted(t, dbh, "rep"), ",")
	if want := "cancelled,success"; got != want {
		t.Fatalf("history: got %q, want %q", got, want)
	}
}

// Ensure a run waiting to replace a run that ignores its context is
// itself replaced, and skipped, by a newer one; the newest runs last.
func TestOverlap_Replace_Displaced(t *testing.T) {
	h := newHeld(false)
	s, dbh, _ := setup(t, jobs.Config{}, overlapJob(t, "rep", jobs.OverlapReplace, h.fn))
	first := runAsync(s, "rep")
	<-h.started
	second := runAsync(s, "rep")
	waitWaiting(t, s, "rep")
	third := runAsync(s, "rep")
	if r := <-second; r.Result != jobs.Skipped {
		t.Fatalf("displaced waiting run: got %s (%v), want %s", r.Result, r.Err, jobs.Skipped)
	}
	close(h.release)
	// The first run ignored its context and returned nil: it did its work.
	for i, ch := range []<-chan *jobs.Run{first, third} {
		if r := <-ch; r.Result != jobs.Success {
			t.Fatalf("run %d: got %s (%v), want %s", i+1, r.Result, r.Err, jobs.Success)
		}
	}
	if got, want := h.most.Load(), int32(1); got != want {
		t.Fatalf("runs at once: got %d, want %d", got, want)
	}
	got := strings.Join(sorted(t, dbh, "rep"), ",")
	if want := "skipped,success,success"; got != want {
		t.Fatalf("history: got %q, want %q", got, want)
	}
}

// Ensure skip, the default, still skips an overlapping run, and that Stop
// ends a buffered wait, the waiting run being skipped.
func TestOverlap_BufferOne_Stop(t *testing.T) {
	h := newHeld(true)
	s, _, _ := setup(t, jobs.Config{ShutdownGrace: time.Minute}, overlapJob(t, "buf", jobs.OverlapBufferOne, h.fn))
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	first := runAsync(s, "buf")
	<-h.started
	second := runAsync(s, "buf")
	waitWaiting(t, s, "buf")
	stopped := make(chan error, 1)
	go func() { stopped <- s.Stop(context.Background()) }()
	if r := <-second; r.Result != jobs.Skipped {
		t.Fatalf("buffered run at Stop: got %s (%v), want %s", r.Result, r.Err, jobs.Skipped)
	}
	close(h.release)
	if r := <-first; r.Result != jobs.Success {
		t.Fatalf("running run: got %s (%v), want %s", r.Result, r.Err, jobs.Success)
	}
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
}

func TestCheckOverlap(t *testing.T) {
	for _, p := range []jobs.Overlap{"", jobs.OverlapSkip, jobs.OverlapBufferOne, jobs.OverlapReplace} {
		if err := jobs.CheckOverlap(p); err != nil {
			t.Errorf("CheckOverlap(%q): %v", p, err)
		}
	}
	if err := jobs.CheckOverlap("allow"); err == nil || !strings.Contains(err.Error(), `got "allow"`) {
		t.Errorf(`CheckOverlap("allow"): got %v, want an error naming it`, err)
	}
}
