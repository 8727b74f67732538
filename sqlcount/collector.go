package sqlcount

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sqlworker/worker/internal/metricopt"
)

// DefaultNamespace is the namespace of the Collector's metrics unless
// WithNamespace says otherwise: worker_db_handles_open and so on.
const DefaultNamespace = "worker"

// subsystem is the middle part of every metric name.
const subsystem = "db"

// Collector exports a Counter's counts as <namespace>_db_*: handles,
// connections and statements open (gauges), and handles and connections
// opened and closed (counters). It reads the Counter at scrape time.
type Collector struct {
	counter *Counter

	handlesOpen       *prometheus.Desc
	handlesOpened     *prometheus.Desc
	handlesClosed     *prometheus.Desc
	connectionsOpen   *prometheus.Desc
	connectionsOpened *prometheus.Desc
	connectionsClosed *prometheus.Desc
	statementsOpen    *prometheus.Desc
}

var _ prometheus.Collector = (*Collector)(nil)

// Option configures a Collector: WithNamespace, WithConstLabels. It is
// this package's own type: another package's options do not compile here.
type Option func(*metricopt.Options)

// WithNamespace sets the first part of the metric names; "" leaves it out
// (db_handles_open). The default is DefaultNamespace.
func WithNamespace(namespace string) Option { return metricopt.Namespace(namespace) }

// WithConstLabels adds labels to every metric, such as db="orders", so that
// the Collectors of several Counters can share a registry.
func WithConstLabels(labels prometheus.Labels) Option { return metricopt.ConstLabels(labels) }

// NewCollector returns a Collector of c's counts. It panics when c is nil.
func NewCollector(c *Counter, opts ...Option) *Collector {
	if c == nil {
		panic("sqlcount: NewCollector with a nil Counter")
	}
	o := metricopt.Apply(DefaultNamespace, opts)
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(o.Namespace, subsystem, name), help, nil, o.ConstLabels)
	}
	// The help texts are the worker's (docs/metrics.md), which counts every
	// handle of the process into one Counter.
	return &Collector{
		counter:           c,
		handlesOpen:       d("handles_open", "sql.DB handles open on the counting driver, across the whole process."),
		handlesOpened:     d("handles_opened_total", "sql.DB handles opened on the counting driver."),
		handlesClosed:     d("handles_closed_total", "sql.DB handles closed on the counting driver."),
		connectionsOpen:   d("connections_open", "Driver connections open, across all handles of the process."),
		connectionsOpened: d("connections_opened_total", "Driver connections opened, across all handles of the process."),
		connectionsClosed: d("connections_closed_total", "Driver connections closed, across all handles of the process."),
		statementsOpen:    d("statements_open", "Prepared statements open on the driver, across all handles of the process."),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		c.handlesOpen, c.handlesOpened, c.handlesClosed,
		c.connectionsOpen, c.connectionsOpened, c.connectionsClosed,
		c.statementsOpen,
	} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	a := c.counter.Counts()
	gauge := func(d *prometheus.Desc, v uint64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v))
	}
	counter := func(d *prometheus.Desc, v uint64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	gauge(c.handlesOpen, a.HandlesOpen())
	counter(c.handlesOpened, a.HandlesOpened)
	counter(c.handlesClosed, a.HandlesClosed)
	gauge(c.connectionsOpen, a.ConnectionsOpen())
	counter(c.connectionsOpened, a.ConnectionsOpened)
	counter(c.connectionsClosed, a.ConnectionsClosed)
	gauge(c.statementsOpen, a.StatementsOpen())
}
