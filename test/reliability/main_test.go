// Package reliability_test runs the built worker through its bad days:
// database faults, SIGKILL mid-write, a job that ignores its context, a low
// FD limit, an authenticated TLS endpoint and, behind the load build tag,
// sustained load. See docs/reliability.md.
package reliability_test

import (
	"database/sql"
	"flag"
	"runtime"
	"strconv"
	"strings"
	"testing"

	_ "github.com/mattn/go-sqlite3"
	dto "github.com/prometheus/client_model/go"

	"github.com/sqlworker/worker/internal/workertest"
)

// The worker built once for the package: clean, and with -tags leak.
var workerBin, leakBin string

// minParallel is how many of this package's parallel tests run at once
// unless -test.parallel says otherwise: they spend their time waiting on
// the built worker (its ticks, its shutdown grace and force timeout), not
// on the CPU, so three at a time on two cores keep the cores busy and the
// package, make test's longest, 30–40 s shorter (docs/performance.md,
// "Test time"). The replica tests stay serial: a lease misjudged under
// CPU contention would be a false failure.
const minParallel = 3

func TestMain(m *testing.M) {
	flag.Parse()
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "test.parallel" })
	if !set && runtime.GOMAXPROCS(0) < minParallel { // -test.parallel's default is GOMAXPROCS
		_ = flag.Set("test.parallel", strconv.Itoa(minParallel))
	}
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
