package jobs_test

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sqlworker/worker/internal/db"
	"github.com/sqlworker/worker/internal/jobhistory"
	"github.com/sqlworker/worker/internal/jobs"
	"github.com/sqlworker/worker/internal/web"
	"github.com/sqlworker/worker/internal/workertest"
)

// lockedDB returns a handle on a new database with a short busy timeout,
// and a function that holds the write lock from another connection until
// the function it returns is called.
func lockedDB(t *testing.T) (*db.Handle, func() (release func())) {
	t.Helper()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "worker.db")
	h := db.New(db.Config{Path: path, BusyTimeout: 50 * time.Millisecond})
	t.Cleanup(func() { h.Close(ctx) })
	if _, err := h.Init(ctx); err != nil {
		t.Fatal(err)
	}
	other, err := sql.Open("sqlite3", "file:"+path+"?_txlock=immediate")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Close() })
	return h, func() func() {
		tx, err := other.Begin()
		if err != nil {
			t.Fatal(err)
		}
		return func() {
			if err := tx.Rollback(); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func gauge(t *testing.T, reg prometheus.Gatherer, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			m := mf.GetMetric()[0]
			if m.Counter != nil {
				return m.Counter.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("%s not found", name)
	return 0
}

// startedTimes returns started_at of a job's rows, in id order.
func startedTimes(t *testing.T, h *db.Handle, name string) []string {
	t.Helper()
	return column(t, h, "started_at", name)
}

// Ensure runs whose history write failed are held, reported by HistoryErr
// and worker_job_history_pending, and written in order with their original
// times by the first write that succeeds.
func TestScheduler_HistoryBuffer(t *testing.T) {
	h, lock := lockedDB(t)
	reg := prometheus.NewRegistry()
	var errs []error
	s, err := jobs.New(jobs.Config{DB: h, Registerer: reg, OnFinish: func(_ *jobs.Run, err error) { errs = append(errs, err) }},
		[]jobs.Job{job(t, "tick", func(context.Context, *sql.DB) (int64, error) { return 0, nil })})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop(context.Background())
	if got := gauge(t, reg, "worker_job_history_pending"); got != 0 {
		t.Fatalf("worker_job_history_pending at start: got %v, want 0", got)
	}
	if got := gauge(t, reg, "worker_job_history_dropped_total"); got != 0 {
		t.Fatalf("worker_job_history_dropped_total at start: got %v, want 0", got)
	}

	release := lock()
	var want []string
	for range 3 {
		r, err := s.RunOnce("tick")
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, jobhistory.FormatTime(r.StartedAt))
	}
	var he *jobs.HistoryError
	if err := s.HistoryErr(); !errors.As(err, &he) || he.Pending != 3 || !strings.Contains(err.Error(), "database is locked") {
		t.Fatalf("HistoryErr under the lock: got %v, want 3 runs held, database is locked", err)
	}
	if got, want := gauge(t, reg, "worker_job_history_pending"), 3.0; got != want {
		t.Fatalf("worker_job_history_pending: got %v, want %v", got, want)
	}
	if last := errs[len(errs)-1]; !errors.As(last, &he) || he.Pending != 3 {
		t.Fatalf("OnFinish history error: got %v, want 3 runs held", last)
	}
	release()

	r, err := s.RunOnce("tick")
	if err != nil {
		t.Fatal(err)
	}
	want = append(want, jobhistory.FormatTime(r.StartedAt))
	if err := errs[len(errs)-1]; err != nil {
		t.Fatalf("OnFinish history error after release: got %v, want nil", err)
	}
	if err := s.HistoryErr(); err != nil {
		t.Fatalf("HistoryErr after release: got %v, want nil", err)
	}
	if got, want := gauge(t, reg, "worker_job_history_pending"), 0.0; got != want {
		t.Fatalf("worker_job_history_pending after release: got %v, want %v", got, want)
	}
	if got, want := strings.Join(startedTimes(t, h, "tick"), ","), strings.Join(want, ","); got != want {
		t.Fatalf("started_at in id order: got %v, want %v", got, want)
	}
	if got := gauge(t, reg, "worker_job_history_dropped_total"); got != 0 {
		t.Fatalf("worker_job_history_dropped_total: got %v, want 0", got)
	}
}

// Ensure runs beyond the buffer's bound are dropped, counted and reported,
// and the held ones still written.
func TestScheduler_HistoryBuffer_Bound(t *testing.T) {
	h, lock := lockedDB(t)
	reg := prometheus.NewRegistry()
	var last error
	s, err := jobs.New(jobs.Config{DB: h, Registerer: reg, HistoryBuffer: 2, OnFinish: func(_ *jobs.Run, err error) { last = err }},
		[]jobs.Job{job(t, "tick", func(context.Context, *sql.DB) (int64, error) { return 0, nil })})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop(context.Background())
	release := lock()
	for range 5 {
		if _, err := s.RunOnce("tick"); err != nil {
			t.Fatal(err)
		}
	}
	if !errors.Is(last, jobs.ErrHistoryFull) {
		t.Fatalf("OnFinish history error of a dropped run: got %v, want %v", last, jobs.ErrHistoryFull)
	}
	if got, want := gauge(t, reg, "worker_job_history_dropped_total"), 3.0; got != want {
		t.Fatalf("worker_job_history_dropped_total: got %v, want %v", got, want)
	}
	if got, want := gauge(t, reg, "worker_job_history_pending"), 2.0; got != want {
		t.Fatalf("worker_job_history_pending: got %v, want %v", got, want)
	}
	release()
	if _, err := s.RunOnce("tick"); err != nil {
		t.Fatal(err)
	}
	if got, want := len(startedTimes(t, h, "tick")), 3; got != want {
		t.Fatalf("rows written: got %d, want %d (2 held + 1)", got, want)
	}
}

// Ensure Stop writes the held runs once more before returning, and, when it
// still cannot, counts them as dropped and returns ErrHistoryLost.
func TestScheduler_HistoryBuffer_Stop(t *testing.T) {
	for _, tc := range []struct {
		name        string
		releaseLock bool
	}{{"Written", true}, {"Lost", false}} {
		t.Run(tc.name, func(t *testing.T) {
			h, lock := lockedDB(t)
			reg := prometheus.NewRegistry()
			s, err := jobs.New(jobs.Config{DB: h, Registerer: reg},
				[]jobs.Job{job(t, "tick", func(context.Context, *sql.DB) (int64, error) { return 0, nil })})
			if err != nil {
				t.Fatal(err)
			}
			release := lock()
			for range 2 {
				if _, err := s.RunOnce("tick"); err != nil {
					t.Fatal(err)
				}
			}
			if tc.releaseLock {
				release()
			} else {
				defer release()
			}
			err = s.Stop(context.Background())
			if tc.releaseLock {
				if err != nil {
					t.Fatalf("Stop: got %v, want nil", err)
				}
				if got, want := len(startedTimes(t, h, "tick")), 2; got != want {
					t.Fatalf("rows written at Stop: got %d, want %d", got, want)
				}
				return
			}
			if !errors.Is(err, jobs.ErrHistoryLost) {
				t.Fatalf("Stop: got %v, want %v", err, jobs.ErrHistoryLost)
			}
			if got, want := gauge(t, reg, "worker_job_history_dropped_total"), 2.0; got != want {
				t.Fatalf("worker_job_history_dropped_total: got %v, want %v", got, want)
			}
			if got := gauge(t, reg, "worker_job_history_pending"); got != 0 {
				t.Fatalf("worker_job_history_pending after Stop: got %v, want 0", got)
			}
		})
	}
}

// Ensure a started scheduler writes held runs on its retry timer, without
// waiting for another run.
func TestScheduler_HistoryBuffer_Retry(t *testing.T) {
	h, lock := lockedDB(t)
	j := mustSchedule(t, "@yearly") // never runs during the test
	j.Name, j.Func = "tick", func(context.Context, *sql.DB) (int64, error) { return 0, nil }
	s, err := jobs.New(jobs.Config{DB: h, Registerer: prometheus.NewRegistry()}, []jobs.Job{j})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop(context.Background())
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	release := lock()
	if _, err := s.RunOnce("tick"); err != nil {
		t.Fatal(err)
	}
	if err := s.HistoryErr(); err == nil {
		t.Fatal("HistoryErr under the lock: got nil, want an error")
	}
	release()
	deadline := time.Now().Add(10 * time.Second)
	for s.HistoryErr() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("held run not written by the retry timer within 10 s: %v", s.HistoryErr())
		}
		time.Sleep(20 * time.Millisecond) // polling a condition
	}
	if got, want := len(startedTimes(t, h, "tick")), 1; got != want {
		t.Fatalf("rows written: got %d, want %d", got, want)
	}
}

// gatedIniter blocks the first Init after arm until gate is closed: the
// history write of the run that armed it.
type gatedIniter struct {
	h       *db.Handle
	armed   atomic.Bool
	blocked chan struct{} // closed when the armed Init blocks
	gate    chan struct{}
}

func (g *gatedIniter) Init(ctx context.Context) (*sql.DB, error) {
	if g.armed.CompareAndSwap(true, false) {
		close(g.blocked)
		<-g.gate
	}
	return g.h.Init(ctx)
}

// Ensure readiness follows the newest run when records arrive out of order:
// a failed run whose history write is slow reports after a newer success,
// and must not make the worker not ready again.
func TestScheduler_OutOfOrderFinish_NewestWins(t *testing.T) {
	g := &gatedIniter{h: workertest.MustOpenHandle(t), blocked: make(chan struct{}), gate: make(chan struct{})}
	readiness := web.NewReadiness("starting")
	readiness.Ready()
	var mu sync.Mutex
	var order []jobs.Result
	observe := func(r *jobs.Run, _ error) {
		mu.Lock()
		order = append(order, r.Result)
		mu.Unlock()
		var err error
		if r.Result != jobs.Success {
			err = r.Err
		}
		readiness.SetFaultAt("heartbeat", r.ScheduledAt, err)
	}
	var calls atomic.Int32
	s, err := jobs.New(jobs.Config{DB: g, Registerer: prometheus.NewRegistry(), OnFinish: observe},
		[]jobs.Job{job(t, "heartbeat", func(context.Context, *sql.DB) (int64, error) {
			if calls.Add(1) == 1 {
				g.armed.Store(true) // hold this run's history write
				return 0, errors.New("database is locked")
			}
			return 1, nil
		})})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop(context.Background())
	older := make(chan struct{})
	go func() {
		defer close(older)
		s.RunOnce("heartbeat")
	}()
	<-g.blocked // the first run failed and its history write is held
	if r, err := s.RunOnce("heartbeat"); err != nil || r.Result != jobs.Success {
		t.Fatalf("newer run: got %v %v, want success", r, err)
	}
	close(g.gate)
	<-older
	mu.Lock()
	got := order
	mu.Unlock()
	if len(got) != 2 || got[0] != jobs.Success || got[1] != jobs.Failure {
		t.Fatalf("OnFinish order: got %v, want [success failure] (the older run last)", got)
	}
	if got := readiness.Reason(); got != "" {
		t.Fatalf("Reason after the older failure reported last: got %q, want empty", got)
	}
	if got, want := strings.Join(history(t, g.h, "heartbeat"), ","), "failure:0:database is locked,success:1:"; got != want {
		t.Fatalf("history: got %q, want %q", got, want)
	}
}

// Ensure Overdue reports a job with no success for more than the given
// intervals of its schedule, and clears at the next success.
func TestScheduler_Overdue(t *testing.T) {
	release := make(chan struct{})
	var hung atomic.Bool
	j := mustSchedule(t, "@every 1s")
	j.Name = "beat"
	j.Func = func(ctx context.Context, _ *sql.DB) (int64, error) {
		if !hung.Swap(true) {
			select { // the first run hangs; the next ones are skipped
			case <-release:
			case <-ctx.Done():
			}
		}
		return 0, nil
	}
	s, _, _ := setup(t, jobs.Config{}, j)
	if err := s.Overdue("beat", 2); err != nil {
		t.Fatalf("Overdue before Start: got %v, want nil", err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	var err error
	for err = s.Overdue("beat", 2); err == nil; err = s.Overdue("beat", 2) {
		if time.Now().After(deadline) {
			t.Fatal("Overdue: still nil 20 s after Start with every run hung or skipped")
		}
		time.Sleep(20 * time.Millisecond) // polling a condition
	}
	if !errors.Is(err, jobs.ErrNoSuccess) || !regexp.MustCompile(`^no success for \d+(\.\d)?s \(2 intervals of 1s\)$`).MatchString(err.Error()) {
		t.Fatalf("Overdue: got %v, want %q", err, "no success for Ns (2 intervals of 1s)")
	}
	close(release)
	for s.Overdue("beat", 2) != nil {
		if time.Now().After(deadline) {
			t.Fatalf("Overdue after a success: got %v, want nil", s.Overdue("beat", 2))
		}
		time.Sleep(20 * time.Millisecond) // polling a condition
	}
	if err := s.Overdue("nope", 2); err != nil {
		t.Fatalf("Overdue of an unknown job: got %v, want nil", err)
	}
}

// Ensure the history metrics pass promlint.
func TestScheduler_HistoryMetrics_Lint(t *testing.T) {
	_, _, reg := setup(t, jobs.Config{}, job(t, "a", jobs.SQLFunc("SELECT 1")))
	problems, err := testutil.GatherAndLint(reg, "worker_job_history_pending", "worker_job_history_dropped_total")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	if got := testutil.CollectAndCount(reg, "worker_job_history_pending", "worker_job_history_dropped_total"); got != 2 {
		t.Fatalf("history series: got %d, want 2", got)
	}
}
