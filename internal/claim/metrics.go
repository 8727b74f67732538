package claim

import "github.com/prometheus/client_golang/prometheus"

// metrics are the coordination series of one replica.
type metrics struct {
	claims     *prometheus.CounterVec
	leasesLost *prometheus.CounterVec
	fenced     *prometheus.CounterVec
	missed     *prometheus.CounterVec
	offset     prometheus.Gauge
}

func newMetrics(namespace string) *metrics {
	return &metrics{
		claims: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: prometheus.BuildFQName(namespace, "job", "claims_total"),
			Help: "Claims of scheduled ticks by result: won, lost to another replica, taken_over after a lease ran out, skipped (found the job busy and recorded the tick skipped).",
		}, []string{"job_name", "result"}),
		leasesLost: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: prometheus.BuildFQName(namespace, "job", "leases_lost_total"),
			Help: "Leases of running ticks this replica lost: a renewal or finish was refused, or no renewal succeeded for a whole lease.",
		}, []string{"job_name"}),
		fenced: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: prometheus.BuildFQName(namespace, "job", "fenced_finishes_total"),
			Help: "Finishes of runs refused because another replica had taken the tick over (owner and attempt fencing).",
		}, []string{"job_name"}),
		missed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: prometheus.BuildFQName(namespace, "job", "ticks_missed_total"),
			Help: "Scheduled ticks that no replica claimed within the missed grace, counted by the replica that marked them.",
		}, []string{"job_name"}),
		offset: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: prometheus.BuildFQName(namespace, "db", "clock_offset_seconds"),
			Help: "The database server's clock minus this replica's, measured at the midpoint of the last claim's round trip.",
		}),
	}
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.claims, m.leasesLost, m.fenced, m.missed, m.offset}
}

func (m *metrics) init(job string) {
	for _, r := range []Result{Won, Lost, TakenOver, Skipped} {
		m.claims.WithLabelValues(job, string(r))
	}
	m.leasesLost.WithLabelValues(job)
	m.fenced.WithLabelValues(job)
	m.missed.WithLabelValues(job)
}
