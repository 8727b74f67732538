package fdstat

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Collector exports a Counter's counts as worker_open_fds{type}.
type Collector struct {
	counter *Counter
	desc    *prometheus.Desc
}

var _ prometheus.Collector = (*Collector)(nil)

// NewCollector returns a Collector that counts at scrape time.
func NewCollector(namespace string, c *Counter) *Collector {
	return &Collector{
		counter: c,
		desc: prometheus.NewDesc(
			prometheus.BuildFQName(namespace, "", "open_fds"),
			"Open file descriptors of the process by what they point to.",
			[]string{"type"}, nil,
		),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	counts, err := c.counter.Count()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.desc, err)
		return
	}
	for _, t := range Types {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(counts[t]), t.String())
	}
}
