package claim

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sqlworker/worker/internal/jobs"
)

// SetClockSkew makes c's local clock run d ahead of the machine's (behind
// when d is negative), as a replica with a wrong clock.
func SetClockSkew(c *Claimer, d time.Duration) {
	c.now = func() time.Time { return time.Now().Add(d) }
}

// Claims returns c's worker_job_claims_total{job_name=job,result=r}.
func Claims(c *Claimer, job string, r Result) prometheus.Counter {
	return c.metrics.claims.WithLabelValues(job, string(r))
}

// LeasesLost returns c's worker_job_leases_lost_total{job_name=job}.
func LeasesLost(c *Claimer, job string) prometheus.Counter {
	return c.metrics.leasesLost.WithLabelValues(job)
}

// FencedFinishes returns c's worker_job_fenced_finishes_total{job_name=job}.
func FencedFinishes(c *Claimer, job string) prometheus.Counter {
	return c.metrics.fenced.WithLabelValues(job)
}

// TicksMissed returns c's worker_job_ticks_missed_total{job_name=job}.
func TicksMissed(c *Claimer, job string) prometheus.Counter {
	return c.metrics.missed.WithLabelValues(job)
}

// ClockOffset returns c's worker_db_clock_offset_seconds.
func ClockOffset(c *Claimer) prometheus.Gauge { return c.metrics.offset }

// Earlier returns the ticks co checks for a claim at tick t (and remembers
// t as the previous tick, as Acquire does).
func Earlier(co *Coordinator, t jobs.Tick) []time.Time { return co.earlier(t) }
