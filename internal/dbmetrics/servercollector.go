package dbmetrics

import (
	"context"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sqlworker/worker/internal/db"
)

// DefaultServerQueryTimeout bounds ServerCollector's query of
// pg_stat_activity: a scrape must not hang on a server that does not answer,
// or on a pool whose connections are all in use.
const DefaultServerQueryTimeout = 2 * time.Second

// ServerStates are the values of the state label of
// worker_db_server_connections: pg_stat_activity's states, in snake case,
// and "unknown" for a backend whose state the server does not show.
var ServerStates = []string{
	"active", "idle", "idle_in_transaction", "idle_in_transaction_aborted",
	"fastpath_function_call", "disabled", "unknown",
}

// ServerCollector exports worker_db_server_connections{state}: the backends
// of this replica as the PostgreSQL server sees them, in pg_stat_activity,
// selected by the handle's application_name. Beside the client's own count
// (worker_db_connections_open), it shows a connection the client does not
// count: a leak that the driver wrapper cannot see. Its query runs on one of
// the pool's connections, which is then one of the active backends it
// counts. It exports nothing while the handle is not open.
type ServerCollector struct {
	h       *db.Handle
	timeout time.Duration
	desc    *prometheus.Desc
}

var _ prometheus.Collector = (*ServerCollector)(nil)

// NewServerCollector returns a ServerCollector for h, a PostgreSQL handle.
func NewServerCollector(namespace string, h *db.Handle) *ServerCollector {
	return &ServerCollector{
		h:       h,
		timeout: DefaultServerQueryTimeout,
		desc: prometheus.NewDesc(prometheus.BuildFQName(namespace, "db", "server_connections"),
			"Backends of this replica in the PostgreSQL server's pg_stat_activity (by its application_name, database and user), by state; the scrape's own query is one active backend.",
			[]string{"state"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *ServerCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect implements prometheus.Collector.
func (c *ServerCollector) Collect(ch chan<- prometheus.Metric) {
	d := c.h.OpenPool()
	if d == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	rows, err := d.QueryContext(ctx, `SELECT coalesce(state, ''), count(*) FROM pg_stat_activity
		WHERE `+db.OwnBackends+` GROUP BY 1`, c.h.ApplicationName())
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.desc, err)
		return
	}
	defer rows.Close()
	counts := make(map[string]float64, len(ServerStates))
	for _, s := range ServerStates {
		counts[s] = 0
	}
	for rows.Next() {
		var state string
		var n float64
		if err := rows.Scan(&state, &n); err != nil {
			ch <- prometheus.NewInvalidMetric(c.desc, err)
			return
		}
		label := strings.NewReplacer(" ", "_", "(", "", ")", "").Replace(state)
		if _, ok := counts[label]; !ok {
			label = "unknown"
		}
		counts[label] += n
	}
	if err := rows.Err(); err != nil {
		ch <- prometheus.NewInvalidMetric(c.desc, err)
		return
	}
	for _, s := range ServerStates {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, counts[s], s)
	}
}
