// Package reliability_test runs the built worker through its bad days:
// database faults, SIGKILL mid-write, a job that ignores its context, a low
// FD limit, an authenticated TLS endpoint and, behind the load build tag,
// sustained load. See docs/reliability.md.
package reliability_test

import (
	"database/sql"
	"strings"
	"testing"

	_ "github.com/mattn/go-sqlite3"
	dto "github.com/prometheus/client_model/go"

	"github.com/sqlworker/worker/internal/workertest"
)

// The worker built once for the package: clean, and with -tags leak.
var workerBin, leakBin string

func TestMain(m *testing.M) {
	workertest.RunMain(m,
		workertest.Binary{Path: &workerBin},
		workertest.Binary{Path: &leakBin, Tags: "leak"},
	)
}

// StartWorker starts a worker; Options.Bin defaults to the clean build.
func StartWorker(tb testing.TB, o workertest.Options) *workertest.Worker {
	tb.Helper()
	if o.Bin == "" {
		o.Bin = workerBin
	}
	return workertest.Start(tb, o)
}

// runs returns worker_job_runs_total{job, result}.
func runs(mfs map[string]*dto.MetricFamily, job, result string) float64 {
	return workertest.Sum(mfs["worker_job_runs_total"], map[string]string{"job_name": job, "result": result})
}

// integrityCheck runs PRAGMA integrity_check and returns its lines.
func integrityCheck(tb testing.TB, d *sql.DB) string {
	tb.Helper()
	return strings.Join(workertest.Strings(tb, d, "PRAGMA integrity_check"), "; ")
}
