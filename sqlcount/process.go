package sqlcount

import (
	"runtime"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sqlworker/worker/internal/metricopt"
)

// ProcessHandles returns the *sql.DB handles open in the process on any
// driver, wrapped or not: every open *sql.DB keeps one goroutine in
// database/sql's connectionOpener, from sql.Open or sql.OpenDB until its
// Close returns, and ProcessHandles counts those goroutines. It sees what
// no wrapper can, a plain sql.Open("pgx", ...) for one, but not where the
// handles came from. A goroutine that has not run yet shows no function,
// so a handle counts from its opener's first run, microseconds after its
// open, until its Close. It reads every goroutine's stack
// (runtime.GoroutineProfile), which stops the world briefly: call it at
// scrape time, not per query.
func ProcessHandles() int {
	var recs []runtime.StackRecord
	n, _ := runtime.GoroutineProfile(nil)
	for {
		recs = make([]runtime.StackRecord, n+n/4+8)
		var ok bool
		if n, ok = runtime.GoroutineProfile(recs); ok {
			break
		}
	}
	handles := 0
	for _, r := range recs[:n] {
		// The outermost frame is runtime.goexit, the goroutine's own
		// function the one before.
		if stk := r.Stack(); len(stk) > 1 && isOpenerPC(stk[len(stk)-2]) {
			handles++
		}
	}
	return handles
}

// ProcessCollector exports ProcessHandles as
// <namespace>_db_process_handles_open, at scrape time. Register one per
// registry: the count is the process's, whatever the Counters.
type ProcessCollector struct {
	handlesOpen *prometheus.Desc
}

var _ prometheus.Collector = (*ProcessCollector)(nil)

// NewProcessCollector returns a ProcessCollector; the options are those of
// NewCollector.
func NewProcessCollector(opts ...Option) *ProcessCollector {
	o := metricopt.Apply(DefaultNamespace, opts)
	return &ProcessCollector{handlesOpen: prometheus.NewDesc(
		prometheus.BuildFQName(o.Namespace, subsystem, "process_handles_open"),
		"sql.DB handles open in the process on any driver, counted or not: database/sql's connectionOpener goroutines.",
		nil, o.ConstLabels)}
}

// Describe implements prometheus.Collector.
func (c *ProcessCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.handlesOpen }

// Collect implements prometheus.Collector.
func (c *ProcessCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(c.handlesOpen, prometheus.GaugeValue, float64(ProcessHandles()))
}
