package db_test

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"path/filepath"
	"slices"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/sqlworker/worker/internal/db"
	"github.com/sqlworker/worker/internal/dbmetrics"
	"github.com/sqlworker/worker/internal/drivertest"
	"github.com/sqlworker/worker/internal/workertest"
)

// Ensure the connections and statements of the Handle and of
// sql.Open(DriverName), which sqlcount wraps, implement exactly the optional
// interfaces of the worker's SQLite connection beneath, Validator included.
func TestConnector_OptionalInterfaces(t *testing.T) {
	want := []string{"Pinger", "ExecerContext", "QueryerContext", "ConnPrepareContext", "ConnBeginTx", "Validator", "Execer", "Queryer"}
	check := func(t *testing.T, d *sql.DB) {
		ctx := context.Background()
		c, err := d.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		err = c.Raw(func(dc any) error {
			base := dc.(interface{ Unwrap() driver.Conn }).Unwrap()
			got, wantBase := drivertest.Implemented(dc, drivertest.ConnInterfaces), drivertest.Implemented(base, drivertest.ConnInterfaces)
			if !slices.Equal(got, wantBase) {
				t.Errorf("connection: got %v, want %v", got, wantBase)
			}
			if !slices.Equal(wantBase, want) {
				t.Errorf("base connection: got %v, want %v", wantBase, want)
			}
			ws, err := dc.(driver.ConnPrepareContext).PrepareContext(ctx, "SELECT ?")
			if err != nil {
				return err
			}
			defer ws.Close()
			bs, err := base.(driver.ConnPrepareContext).PrepareContext(ctx, "SELECT ?")
			if err != nil {
				return err
			}
			defer bs.Close()
			if got, want := drivertest.Implemented(ws, drivertest.StmtInterfaces), drivertest.Implemented(bs, drivertest.StmtInterfaces); !slices.Equal(got, want) {
				t.Errorf("statement: got %v, want %v", got, want)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	t.Run("Handle", func(t *testing.T) {
		h := workertest.MustOpenHandle(t)
		d, err := h.Init(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		check(t, d)
	})
	t.Run("DriverName", func(t *testing.T) {
		d, err := sql.Open(db.DriverName, "file:"+filepath.Join(t.TempDir(), "open.db"))
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		check(t, d)
	})
}

// Ensure the driver metrics keep the names, help texts and types of
// docs/metrics.md now that sqlcount's Collector makes them.
func TestCollector_DriverMetrics(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(dbmetrics.NewCollector("worker", workertest.MustOpenHandle(t)))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := make(map[string]*dto.MetricFamily)
	for _, mf := range mfs {
		got[mf.GetName()] = mf
	}
	for _, want := range []struct {
		name, help string
		typ        dto.MetricType
	}{
		{"worker_db_handles_open", "sql.DB handles open on the counting driver, across the whole process.", dto.MetricType_GAUGE},
		{"worker_db_handles_opened_total", "sql.DB handles opened on the counting driver.", dto.MetricType_COUNTER},
		{"worker_db_handles_closed_total", "sql.DB handles closed on the counting driver.", dto.MetricType_COUNTER},
		{"worker_db_connections_open", "Driver connections open, across all handles of the process.", dto.MetricType_GAUGE},
		{"worker_db_connections_opened_total", "Driver connections opened, across all handles of the process.", dto.MetricType_COUNTER},
		{"worker_db_connections_closed_total", "Driver connections closed, across all handles of the process.", dto.MetricType_COUNTER},
		{"worker_db_statements_open", "Prepared statements open on the driver, across all handles of the process.", dto.MetricType_GAUGE},
		{"worker_db_process_handles_open", "sql.DB handles open in the process on any driver, counted or not: database/sql's connectionOpener goroutines.", dto.MetricType_GAUGE},
	} {
		mf := got[want.name]
		if mf == nil {
			t.Errorf("%s: got none, want one", want.name)
			continue
		}
		if mf.GetHelp() != want.help || mf.GetType() != want.typ || len(mf.GetMetric()) != 1 || len(mf.GetMetric()[0].GetLabel()) != 0 {
			t.Errorf("%s: got help %q, type %v, %d series, want help %q, type %v, one series without labels",
				want.name, mf.GetHelp(), mf.GetType(), len(mf.GetMetric()), want.help, want.typ)
		}
	}
	a := db.Accounting()
	if got, want := got["worker_db_handles_open"].GetMetric()[0].GetGauge().GetValue(), float64(a.HandlesOpen()); got != want {
		t.Errorf("worker_db_handles_open: got %v, want %v (Accounting)", got, want)
	}
}
