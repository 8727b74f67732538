package fdstat

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sqlworker/worker/internal/metricopt"
)

// DefaultNamespace is the namespace of the Collector's metric unless
// WithNamespace says otherwise: worker_open_fds.
const DefaultNamespace = "worker"

// Collector exports a Counter's counts as <namespace>_open_fds{type}, one
// series for each Type, 0 included. It counts at scrape time.
type Collector struct {
	counter *Counter
	desc    *prometheus.Desc
}

var _ prometheus.Collector = (*Collector)(nil)

// Option configures a Collector: WithNamespace, WithConstLabels. It is
// this package's own type: another package's options do not compile here.
type Option func(*metricopt.Options)

// WithNamespace sets the first part of the metric name; "" leaves it out
// (open_fds). The default is DefaultNamespace.
func WithNamespace(namespace string) Option { return metricopt.Namespace(namespace) }

// WithConstLabels adds labels to every series, such as process="sidecar"
// for a Counter of another process (NewCounterFor).
func WithConstLabels(labels prometheus.Labels) Option { return metricopt.ConstLabels(labels) }

// NewCollector returns a Collector of c's counts. It panics when c is nil.
func NewCollector(c *Counter, opts ...Option) *Collector {
	if c == nil {
		panic("fdstat: NewCollector with a nil Counter")
	}
	o := metricopt.Apply(DefaultNamespace, opts)
	return &Collector{
		counter: c,
		desc: prometheus.NewDesc(
			prometheus.BuildFQName(o.Namespace, "", "open_fds"),
			"Open file descriptors of the process by what they point to.",
			[]string{"type"}, o.ConstLabels,
		),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect implements prometheus.Collector. A failed count is reported as an
// invalid metric, which fails the scrape of this collector only with
// promhttp.ContinueOnError.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	counts, err := c.counter.Count()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.desc, err)
		return
	}
	for _, t := range Types() {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(counts.Get(t)), t.String())
	}
}
