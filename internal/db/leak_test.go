package db_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/sqlworker/worker/fdstat"
	"github.com/sqlworker/worker/internal/db"
	"github.com/sqlworker/worker/internal/dbmetrics"
	"github.com/sqlworker/worker/internal/floorbench"
	"github.com/sqlworker/worker/internal/workertest"
)

// leakyInit is PERF-408's initDb written in Go: every call opens a new
// handle and keeps it in a slice, never closed.
type leakyInit struct {
	dsn     string
	handles []*sql.DB
}

func (l *leakyInit) Init(ctx context.Context) (*sql.DB, error) {
	d, err := sql.Open(db.DriverName, l.dsn)
	if err != nil {
		return nil, err
	}
	l.handles = append(l.handles, d)
	return d, nil
}

func (l *leakyInit) closeAll() {
	for _, d := range l.handles {
		d.Close()
	}
	l.handles = nil
}

// newRegistry registers what the worker exports about its database.
func newRegistry(t testing.TB, h *db.Handle) *prometheus.Registry {
	t.Helper()
	d, err := h.Init(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewDBStatsCollector(d, "main"),
		dbmetrics.NewCollector("worker", h),
		fdstat.NewCollector(fdstat.NewCounter(h.Path())),
	)
	return reg
}

// value gathers reg and returns the value of the series name{labels}.
func value(t testing.TB, reg prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				if !hasLabel(m, labels[i], labels[i+1]) {
					continue metric
				}
			}
			switch {
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			case m.Counter != nil:
				return m.Counter.GetValue()
			}
		}
	}
	t.Fatalf("series %s%v not found", name, labels)
	return 0
}

func hasLabel(m *dto.Metric, name, val string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == name && l.GetValue() == val {
			return true
		}
	}
	return false
}

// Ensure PERF-408 is visible: a leaky init makes handles, driver connections
// and SQLite FDs grow, while go_sql_open_connections of the registered handle
// stays flat. DBStats alone would have shown a healthy worker.
func TestPERF408_DriverAccountingSeesLeak(t *testing.T) {
	h := workertest.MustOpenHandle(t)
	reg := newRegistry(t, h)
	leaky := &leakyInit{dsn: h.DSN()}
	defer leaky.closeAll()

	type snapshot struct{ handles, conns, sqliteFDs, poolConns float64 }
	take := func() snapshot {
		return snapshot{
			handles:   value(t, reg, "worker_db_handles_open"),
			conns:     value(t, reg, "worker_db_connections_open"),
			sqliteFDs: value(t, reg, "worker_open_fds", "type", "sqlite"),
			poolConns: value(t, reg, "go_sql_open_connections", "db_name", "main"),
		}
	}
	before := take()
	const calls = 20
	for range calls {
		d, err := leaky.Init(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if err := d.QueryRow("SELECT count(*) FROM job_runs").Scan(new(int)); err != nil {
			t.Fatal(err)
		}
	}
	after := take()
	t.Logf("after %d leaky Init calls: handles %v→%v, driver connections %v→%v, sqlite FDs %v→%v, go_sql_open_connections %v→%v",
		calls, before.handles, after.handles, before.conns, after.conns, before.sqliteFDs, after.sqliteFDs, before.poolConns, after.poolConns)

	if got, want := after.handles-before.handles, float64(calls); got != want {
		t.Errorf("worker_db_handles_open grew by %v, want %v", got, want)
	}
	if got, want := after.conns-before.conns, float64(calls); got != want {
		t.Errorf("worker_db_connections_open grew by %v, want %v", got, want)
	}
	// Each leaked connection holds the database file and its -wal.
	if got, want := after.sqliteFDs-before.sqliteFDs, float64(2*calls); got < want {
		t.Errorf("worker_open_fds{type=\"sqlite\"} grew by %v, want at least %v", got, want)
	}
	if got, want := after.poolConns, before.poolConns; got != want {
		t.Errorf("go_sql_open_connections: got %v, want %v (flat: the leak is in other handles)", got, want)
	}

	leaky.closeAll()
	if got, want := take(), before; got.handles != want.handles || got.conns != want.conns {
		t.Errorf("after closing the leaked handles: got %+v, want %+v", got, want)
	}
}

// Ensure the db collector's names, types and help pass promlint, and its
// per-handle series are exact.
func TestCollector(t *testing.T) {
	h := workertest.MustOpenHandle(t)
	for range 3 {
		if _, err := h.Init(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	reg := newRegistry(t, h) // one more Init
	const want = `
# HELP worker_db_init_calls_total Calls of the idempotent database Init by result (opened, reused, failed).
# TYPE worker_db_init_calls_total counter
worker_db_init_calls_total{result="failed"} 0
worker_db_init_calls_total{result="opened"} 1
worker_db_init_calls_total{result="reused"} 4
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "worker_db_init_calls_total"); err != nil {
		t.Fatal(err)
	}
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	for _, name := range []string{
		"worker_db_handles_opened_total", "worker_db_handles_closed_total",
		"worker_db_connections_opened_total", "worker_db_connections_closed_total",
		"worker_db_statements_open", "worker_db_size_bytes", "worker_db_wal_size_bytes",
		"worker_db_corrupt",
	} {
		value(t, reg, name)
	}
	if got := value(t, reg, "worker_db_corrupt"); got != 0 {
		t.Errorf("worker_db_corrupt: got %v, want 0", got)
	}
	if got := value(t, reg, "worker_db_size_bytes"); got <= 0 {
		t.Errorf("worker_db_size_bytes: got %v, want > 0", got)
	}
}

// BenchmarkHandle_Init measures the fast path every job run takes against
// its floor: one atomic pointer load and one atomic add, the least a
// counted, lock-free Init can do.
func BenchmarkHandle_Init(b *testing.B) {
	h := workertest.MustOpenHandle(b)
	ctx := context.Background()
	d, err := h.Init(ctx)
	if err != nil {
		b.Fatal(err)
	}
	floor := func(n int) {
		var p atomic.Pointer[sql.DB]
		var calls atomic.Uint64
		p.Store(d)
		for range n {
			if p.Load() == nil {
				b.Fatal("nil handle")
			}
			calls.Add(1)
		}
	}
	b.Run("serial", func(b *testing.B) {
		b.Run("floor", func(b *testing.B) {
			b.ReportAllocs()
			start := floorbench.CPU()
			floor(b.N)
			floorbench.PerOp(b, start, b.N)
		})
		b.Run("worker", func(b *testing.B) {
			b.ReportAllocs()
			start := floorbench.CPU()
			for range b.N {
				if _, err := h.Init(ctx); err != nil {
					b.Fatal(err)
				}
			}
			cpu := floorbench.PerOp(b, start, b.N)
			b.StopTimer()
			start = floorbench.CPU()
			floor(b.N) // side by side with the loop above, as floorbench.Pair
			floorbench.Ratio(b, cpu, float64((floorbench.CPU()-start).Nanoseconds())/float64(b.N))
		})
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := h.Init(ctx); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// BenchmarkLeakyInit measures PERF-408's init for comparison: a new handle
// per call. It opens no connection until used, so this is its cheapest case.
func BenchmarkLeakyInit(b *testing.B) {
	leaky := &leakyInit{dsn: "file:" + filepath.Join(b.TempDir(), "leaky.db")}
	defer leaky.closeAll()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := leaky.Init(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPointSelect compares a point select through the counting driver
// with the raw sqlite3 driver; the target is at most 5 % overhead.
func BenchmarkPointSelect(b *testing.B) {
	for _, driver := range []string{"sqlite3", db.DriverName} {
		b.Run("driver="+driver, func(b *testing.B) {
			d, err := sql.Open(driver, "file:"+filepath.Join(b.TempDir(), "bench.db")+"?_journal_mode=WAL")
			if err != nil {
				b.Fatal(err)
			}
			defer d.Close()
			if _, err := d.Exec("CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT); INSERT INTO kv VALUES (1, 'one')"); err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			b.ReportAllocs()
			var v string
			for b.Loop() {
				if err := d.QueryRowContext(ctx, "SELECT v FROM kv WHERE k = ?", 1).Scan(&v); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
