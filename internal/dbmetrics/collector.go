// Package dbmetrics exports the shared database handle as worker_db_*: its
// Init calls, the driver's accounting and the database's size (Collector),
// database/sql's pool statistics (DBStatsCollector), and on PostgreSQL the
// replica's backends as the server sees them (ServerCollector).
package dbmetrics

import (
	"context"
	"errors"
	"io/fs"
	"os"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sqlworker/worker/internal/db"

	"github.com/sqlworker/worker/sqlcount"
)

// Collector exports the handle's Init calls, the driver's process-wide
// accounting (sqlcount's Collector) and the size of the database (the
// SQLite file and its -wal; on PostgreSQL, pg_database_size) as
// worker_db_*, with the process's handles of any driver (sqlcount's
// ProcessCollector).
type Collector struct {
	h          *db.Handle
	accounting *sqlcount.Collector
	process    *sqlcount.ProcessCollector

	initCalls    *prometheus.Desc
	sizeBytes    *prometheus.Desc
	walSizeBytes *prometheus.Desc
	corrupt      *prometheus.Desc
}

var _ prometheus.Collector = (*Collector)(nil)

// NewCollector returns a Collector for h.
func NewCollector(namespace string, h *db.Handle) *Collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(namespace, "db", name), help, labels, nil)
	}
	return &Collector{
		h:            h,
		accounting:   sqlcount.NewCollector(db.AccountingCounter(), sqlcount.WithNamespace(namespace)),
		process:      sqlcount.NewProcessCollector(sqlcount.WithNamespace(namespace)),
		initCalls:    d("init_calls_total", "Calls of the idempotent database Init by result (opened, reused, failed).", "result"),
		sizeBytes:    d("size_bytes", "Size of the database: the SQLite file, or on PostgreSQL pg_database_size(current_database())."),
		walSizeBytes: d("wal_size_bytes", "Size of the database's -wal file; 0 when absent."),
		corrupt:      d("corrupt", "1 once SQLite reported the database malformed (SQLITE_CORRUPT or SQLITE_NOTADB): jobs no longer write to it; 0 otherwise."),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	c.accounting.Describe(ch)
	c.process.Describe(ch)
	for _, d := range []*prometheus.Desc{c.initCalls, c.sizeBytes, c.walSizeBytes, c.corrupt} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	opened, reused, failed := c.h.InitCalls()
	ch <- prometheus.MustNewConstMetric(c.initCalls, prometheus.CounterValue, float64(opened), "opened")
	ch <- prometheus.MustNewConstMetric(c.initCalls, prometheus.CounterValue, float64(reused), "reused")
	ch <- prometheus.MustNewConstMetric(c.initCalls, prometheus.CounterValue, float64(failed), "failed")

	c.accounting.Collect(ch)
	c.process.Collect(ch)
	var corrupt float64
	if c.h.Corrupt() != nil {
		corrupt = 1
	}
	ch <- prometheus.MustNewConstMetric(c.corrupt, prometheus.GaugeValue, corrupt)

	if c.h.Postgres() {
		c.collectServerSize(ch) // the server's files, not ours: its own answer
		return
	}
	c.collectSize(ch, c.sizeBytes, c.h.Path())
	c.collectSize(ch, c.walSizeBytes, c.h.Path()+"-wal")
}

// collectServerSize exports pg_database_size of the database the handle is
// connected to, bounded like ServerCollector's query; nothing while the
// handle is not open.
func (c *Collector) collectServerSize(ch chan<- prometheus.Metric) {
	d := c.h.OpenPool()
	if d == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), DefaultServerQueryTimeout)
	defer cancel()
	var size float64
	if err := d.QueryRowContext(ctx, `SELECT pg_database_size(current_database())`).Scan(&size); err != nil {
		ch <- prometheus.NewInvalidMetric(c.sizeBytes, err)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.sizeBytes, prometheus.GaugeValue, size)
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

// DBStatsCollector exports the pool statistics of a Handle as go_sql_*, with
// the names, help and db_name label of client_golang's
// collectors.NewDBStatsCollector. That one is bound to one *sql.DB; this one
// reads the handle open at scrape time, because Verify can replace it.
type DBStatsCollector struct {
	h *db.Handle

	maxOpenConnections *prometheus.Desc
	openConnections    *prometheus.Desc
	inUseConnections   *prometheus.Desc
	idleConnections    *prometheus.Desc
	waitCount          *prometheus.Desc
	waitDuration       *prometheus.Desc
	maxIdleClosed      *prometheus.Desc
	maxIdleTimeClosed  *prometheus.Desc
	maxLifetimeClosed  *prometheus.Desc
}

var _ prometheus.Collector = (*DBStatsCollector)(nil)

// NewDBStatsCollector returns a DBStatsCollector for h, labelled
// db_name=dbName.
func NewDBStatsCollector(h *db.Handle, dbName string) *DBStatsCollector {
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("go_sql_"+name, help, nil, prometheus.Labels{"db_name": dbName})
	}
	return &DBStatsCollector{
		h:                  h,
		maxOpenConnections: d("max_open_connections", "Maximum number of open connections to the database."),
		openConnections:    d("open_connections", "The number of established connections both in use and idle."),
		inUseConnections:   d("in_use_connections", "The number of connections currently in use."),
		idleConnections:    d("idle_connections", "The number of idle connections."),
		waitCount:          d("wait_count_total", "The total number of connections waited for."),
		waitDuration:       d("wait_duration_seconds_total", "The total time blocked waiting for a new connection."),
		maxIdleClosed:      d("max_idle_closed_total", "The total number of connections closed due to SetMaxIdleConns."),
		maxIdleTimeClosed:  d("max_idle_time_closed_total", "The total number of connections closed due to SetConnMaxIdleTime."),
		maxLifetimeClosed:  d("max_lifetime_closed_total", "The total number of connections closed due to SetConnMaxLifetime."),
	}
}

// Describe implements prometheus.Collector.
func (c *DBStatsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		c.maxOpenConnections, c.openConnections, c.inUseConnections, c.idleConnections,
		c.waitCount, c.waitDuration, c.maxIdleClosed, c.maxLifetimeClosed, c.maxIdleTimeClosed,
	} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *DBStatsCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.h.Stats()
	gauge := func(d *prometheus.Desc, v float64) { ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v) }
	counter := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v)
	}
	gauge(c.maxOpenConnections, float64(s.MaxOpenConnections))
	gauge(c.openConnections, float64(s.OpenConnections))
	gauge(c.inUseConnections, float64(s.InUse))
	gauge(c.idleConnections, float64(s.Idle))
	counter(c.waitCount, float64(s.WaitCount))
	counter(c.waitDuration, s.WaitDuration.Seconds())
	counter(c.maxIdleClosed, float64(s.MaxIdleClosed))
	counter(c.maxLifetimeClosed, float64(s.MaxLifetimeClosed))
	counter(c.maxIdleTimeClosed, float64(s.MaxIdleTimeClosed))
}
