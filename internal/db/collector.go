package db

import (
	"errors"
	"io/fs"
	"os"

	"github.com/prometheus/client_golang/prometheus"
)

// Collector exports the handle's Init calls, the driver's process-wide
// accounting and the sizes of the database files as worker_db_*.
type Collector struct {
	h *Handle

	initCalls         *prometheus.Desc
	handlesOpen       *prometheus.Desc
	handlesOpened     *prometheus.Desc
	handlesClosed     *prometheus.Desc
	connectionsOpen   *prometheus.Desc
	connectionsOpened *prometheus.Desc
	connectionsClosed *prometheus.Desc
	statementsOpen    *prometheus.Desc
	sizeBytes         *prometheus.Desc
	walSizeBytes      *prometheus.Desc
}

var _ prometheus.Collector = (*Collector)(nil)

// NewCollector returns a Collector for h.
func NewCollector(namespace string, h *Handle) *Collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(namespace, "db", name), help, labels, nil)
	}
	return &Collector{
		h:                 h,
		initCalls:         d("init_calls_total", "Calls of the idempotent database Init by result (opened, reused, failed).", "result"),
		handlesOpen:       d("handles_open", "sql.DB handles open on the counting driver, across the whole process."),
		handlesOpened:     d("handles_opened_total", "sql.DB handles opened on the counting driver."),
		handlesClosed:     d("handles_closed_total", "sql.DB handles closed on the counting driver."),
		connectionsOpen:   d("connections_open", "Driver connections open, across all handles of the process."),
		connectionsOpened: d("connections_opened_total", "Driver connections opened, across all handles of the process."),
		connectionsClosed: d("connections_closed_total", "Driver connections closed, across all handles of the process."),
		statementsOpen:    d("statements_open", "Prepared statements open on the driver, across all handles of the process."),
		sizeBytes:         d("size_bytes", "Size of the database file."),
		walSizeBytes:      d("wal_size_bytes", "Size of the database's -wal file; 0 when absent."),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		c.initCalls, c.handlesOpen, c.handlesOpened, c.handlesClosed,
		c.connectionsOpen, c.connectionsOpened, c.connectionsClosed,
		c.statementsOpen, c.sizeBytes, c.walSizeBytes,
	} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	opened, reused, failed := c.h.InitCalls()
	ch <- prometheus.MustNewConstMetric(c.initCalls, prometheus.CounterValue, float64(opened), "opened")
	ch <- prometheus.MustNewConstMetric(c.initCalls, prometheus.CounterValue, float64(reused), "reused")
	ch <- prometheus.MustNewConstMetric(c.initCalls, prometheus.CounterValue, float64(failed), "failed")

	a := Accounting()
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

	c.collectSize(ch, c.sizeBytes, c.h.Path())
	c.collectSize(ch, c.walSizeBytes, c.h.Path()+"-wal")
}

func (c *Collector) collectSize(ch chan<- prometheus.Metric, d *prometheus.Desc, path string) {
	var size int64
	fi, err := os.Stat(path)
	switch {
	case err == nil:
		size = fi.Size()
	case errors.Is(err, fs.ErrNotExist):
	default:
		ch <- prometheus.NewInvalidMetric(d, err)
		return
	}
	ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(size))
}
