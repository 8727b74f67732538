package jobs_test

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sqlworker/worker/internal/db"
	"github.com/sqlworker/worker/internal/jobs"
)

// finished collects what OnFinish reports.
type finished struct {
	mu      sync.Mutex
	history []error
}

func (f *finished) observe(_ *jobs.Run, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.history = append(f.history, err)
}

func (f *finished) last() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.history[len(f.history)-1]
}

// Ensure a lock held by another process past busy_timeout fails the
// heartbeat and the history write with "database is locked", each reported,
// and both succeed again once the lock is released.
func TestScheduler_Fault_LockHeld(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "worker.db")
	h := db.New(db.Config{Path: path, BusyTimeout: 200 * time.Millisecond})
	defer h.Close(ctx)
	if _, err := h.Init(ctx); err != nil {
		t.Fatal(err)
	}
	b := jobs.NewBuiltins("worker", "v1", time.Hour)
	b.Verify = h.Verify
	fn, _ := b.Func("heartbeat")
	var f finished
	s, err := jobs.New(jobs.Config{DB: h, Registerer: prometheus.NewRegistry(), OnFinish: f.observe}, []jobs.Job{job(t, "heartbeat", fn)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop(ctx)

	other, err := sql.Open("sqlite3", "file:"+path+"?_txlock=immediate")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	tx, err := other.Begin()
	if err != nil {
		t.Fatal(err)
	}
	r, err := s.RunOnce("heartbeat")
	if err != nil {
		t.Fatal(err)
	}
	if r.Result != jobs.Failure || r.Err == nil || !strings.Contains(r.Err.Error(), "database is locked") {
		t.Fatalf("heartbeat under a held lock: got %s (%v), want failure: database is locked", r.Result, r.Err)
	}
	if err := f.last(); err == nil || !strings.Contains(err.Error(), "database is locked") {
		t.Fatalf("history write under a held lock: got %v, want database is locked", err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	if r, err = s.RunOnce("heartbeat"); err != nil || r.Result != jobs.Success {
		t.Fatalf("heartbeat after release: got %v %v, want success", r.Result, err)
	}
	if err := f.last(); err != nil {
		t.Fatalf("history write after release: got %v, want nil", err)
	}
	// The failure could not be written under the lock: it was held and
	// written before the success, in order.
	if got := history(t, h, "heartbeat"); len(got) != 2 || !strings.HasPrefix(got[0], "failure:0:database is locked") || !strings.HasPrefix(got[1], "success") {
		t.Fatalf("history: got %q, want the held failure, then the success", got)
	}
}

// Ensure a removed database directory fails the heartbeat with the cause,
// every later run fails naming the directory, and the first run after the
// directory is back succeeds on a fresh database and is recorded there.
func TestScheduler_Fault_DirectoryRemoved(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	h := db.New(db.Config{Path: filepath.Join(dir, "worker.db")})
	defer h.Close(ctx)
	if _, err := h.Init(ctx); err != nil {
		t.Fatal(err)
	}
	b := jobs.NewBuiltins("worker", "v1", time.Hour)
	b.Verify = h.Verify
	fn, _ := b.Func("heartbeat")
	var f finished
	reg := prometheus.NewRegistry()
	s, err := jobs.New(jobs.Config{DB: h, Registerer: reg, OnFinish: f.observe}, []jobs.Job{job(t, "heartbeat", fn)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop(ctx)

	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	r, _ := s.RunOnce("heartbeat")
	if !errors.Is(r.Err, db.ErrFileChanged) {
		t.Fatalf("heartbeat after the directory went: got %s (%v), want %v", r.Result, r.Err, db.ErrFileChanged)
	}
	r, _ = s.RunOnce("heartbeat")
	if r.Result != jobs.Failure || !strings.Contains(r.Err.Error(), dir+": no such file or directory") {
		t.Fatalf("heartbeat while the directory is gone: got %s (%v), want failure naming %s", r.Result, r.Err, dir)
	}
	if err := f.last(); err == nil {
		t.Fatal("history write while the directory is gone: got nil, want an error")
	}
	if got, want := runs(t, reg, "heartbeat", jobs.Failure), 2.0; got != want {
		t.Fatalf("failures counted: got %v, want %v", got, want)
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if r, _ = s.RunOnce("heartbeat"); r.Result != jobs.Success {
		t.Fatalf("heartbeat after the directory is back: got %s (%v), want success", r.Result, r.Err)
	}
	// The two failures were held and written to the fresh database first.
	if got := history(t, h, "heartbeat"); len(got) != 3 || !strings.HasPrefix(got[0], "failure") || !strings.HasPrefix(got[1], "failure") || !strings.HasPrefix(got[2], "success") {
		t.Fatalf("history in the fresh database: got %q, want the two held failures, then the success", got)
	}
}
