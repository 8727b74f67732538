package jobs

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the worker_job_* series. Every job × result is created at
// start-up so that rate() over a result that never happened is 0, not empty.
type metrics struct {
	runs        *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	startDelay  *prometheus.HistogramVec
	running     *prometheus.GaugeVec
	lastSuccess *prometheus.GaugeVec
	nextRun     *prometheus.GaugeVec
	interval    *prometheus.GaugeVec

	historyPending prometheus.Gauge
	historyDropped prometheus.Counter

	// Catch-up, retries and jitter (catchup.go, retry.go, jitter.go).
	ticksSkipped   *prometheus.CounterVec
	ticksCaughtUp  *prometheus.CounterVec
	retries        *prometheus.CounterVec
	retriesGivenUp *prometheus.CounterVec
	jitter         *prometheus.HistogramVec

	duplicateTicks *prometheus.GaugeVec // duplicates.go
	paused         *prometheus.GaugeVec // pause.go
}

func newMetrics(namespace string) *metrics {
	const sub = "job"
	return &metrics{
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: sub, Name: "runs_total",
			Help: "Finished job runs by result (success, failure, skipped, panic, timeout, cancelled).",
		}, []string{"job_name", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: sub, Name: "duration_seconds",
			Help:    "Wall time of job runs that were not skipped.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
		}, []string{"job_name"}),
		startDelay: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: sub, Name: "start_delay_seconds",
			Help:    "Scheduling lateness: the start of a run minus its scheduled time.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 5},
		}, []string{"job_name"}),
		running: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: sub, Name: "running",
			Help: "1 while a run of the job is in progress.",
		}, []string{"job_name"}),
		lastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: sub, Name: "last_success_timestamp_seconds",
			Help: "Unix time of the job's last successful run; 0 until the first.",
		}, []string{"job_name"}),
		nextRun: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: sub, Name: "next_run_timestamp_seconds",
			Help: "Unix time of the job's next scheduled run.",
		}, []string{"job_name"}),
		interval: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: sub, Name: "interval_seconds",
			Help: "Seconds between the job's next two scheduled runs: how long its schedule expects between successes.",
		}, []string{"job_name"}),
		historyPending: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: sub, Name: "history_pending",
			Help: "Finished runs held in memory because their job_runs row could not be written yet.",
		}),
		historyDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: sub, Name: "history_dropped_total",
			Help: "Finished runs never written to job_runs: the buffer of held runs was full, or they could not be written at shutdown.",
		}),
		ticksSkipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: sub, Name: "ticks_skipped_total",
			Help: "Scheduled ticks never run: missed while the worker was down or paused and not caught up, or stopped during their jitter.",
		}, []string{"job_name"}),
		ticksCaughtUp: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: sub, Name: "ticks_caught_up_total",
			Help: "Missed ticks run late by the job's catch_up policy.",
		}, []string{"job_name"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: sub, Name: "retries_total",
			Help: "Retry attempts started after a retryable failure; the attempts that failed before them are not in runs_total.",
		}, []string{"job_name"}),
		retriesGivenUp: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: sub, Name: "retries_given_up_total",
			Help: "Retryable failures with retries left that were not retried: the wait would have ended after the next tick, or the worker was stopping.",
		}, []string{"job_name"}),
		jitter: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: sub, Name: "jitter_seconds",
			Help:    "Random delay of scheduled runs after their tick (the job's jitter); start delay is counted after it.",
			Buckets: []float64{.01, .05, .1, .5, 1, 5, 10, 30, 60, 300, 900, 3600},
		}, []string{"job_name"}),
		duplicateTicks: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: sub, Name: "duplicate_ticks",
			Help: "Ticks (job, scheduled_at) with more than one success row in job_runs: ticks that ran twice. Counted at start and every duplicate check interval.",
		}, []string{"job_name"}),
		paused: newPausedGauge(namespace),
	}
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.runs, m.duration, m.startDelay, m.running, m.lastSuccess, m.nextRun, m.interval,
		m.historyPending, m.historyDropped, m.ticksSkipped, m.ticksCaughtUp, m.retries, m.retriesGivenUp, m.jitter,
		m.duplicateTicks, m.paused}
}

// jobMetrics are one job's series, resolved once at New rather than looked
// up by label values on every run.
type jobMetrics struct {
	runs        map[Result]prometheus.Counter
	duration    prometheus.Observer
	startDelay  prometheus.Observer
	running     prometheus.Gauge
	lastSuccess prometheus.Gauge
	nextRun     prometheus.Gauge
	interval    prometheus.Gauge
	paused      prometheus.Gauge
}

// init creates the job's series and returns them.
func (m *metrics) init(job string) *jobMetrics {
	jm := &jobMetrics{
		runs:        make(map[Result]prometheus.Counter, len(Results)),
		duration:    m.duration.WithLabelValues(job),
		startDelay:  m.startDelay.WithLabelValues(job),
		running:     m.running.WithLabelValues(job),
		lastSuccess: m.lastSuccess.WithLabelValues(job),
		nextRun:     m.nextRun.WithLabelValues(job),
		interval:    m.interval.WithLabelValues(job),
		paused:      m.paused.WithLabelValues(job),
	}
	for _, r := range Results {
		jm.runs[r] = m.runs.WithLabelValues(job, string(r))
	}
	m.ticksSkipped.WithLabelValues(job)
	m.ticksCaughtUp.WithLabelValues(job)
	m.retries.WithLabelValues(job)
	m.retriesGivenUp.WithLabelValues(job)
	m.duplicateTicks.WithLabelValues(job)
	return jm
}

// setNext exports a job's next run and the interval after it.
func (jm *jobMetrics) setNext(j Job, next time.Time) {
	jm.nextRun.Set(unixSeconds(next))
	jm.interval.Set(j.Schedule.Next(next).Sub(next).Seconds())
}
