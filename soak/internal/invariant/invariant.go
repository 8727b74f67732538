// Package invariant checks the rules that hold at every moment in a healthy
// worker, whatever the trend: one database handle, one opened Init, a pool
// within its limit and not pinned at it, jobs that run, and, on PostgreSQL,
// no more backends on the server than the client counts connections.
//
// A rule applies only when the target exposes the metrics it reads, so a
// generic Go service soaked with --target passes them all as "not
// applicable". Unlike trends, rules are judged on warm-up samples too: a
// second handle is wrong from the first second on.
package invariant

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/common/model"
)

// Rule names, as they appear in report.json and in the verdict line.
const (
	RuleOneHandle  = "one_handle"
	RuleOneOpen    = "init_opened_once"
	RulePoolLimit  = "pool_within_limit"
	RulePoolPinned = "pool_not_pinned"
	RuleJobsRan    = "jobs_ran"
	RuleCleanExit  = "clean_exit"
	RuleServerConn = "server_within_client"
	RuleTickOnce   = "each_tick_once"
)

// ReplicaLabel is the label the harness gives every sample of one replica
// when it soaks several; a Checker follows one replica.
const ReplicaLabel = "replica"

// ServerSeries is the sum over state of worker_db_server_connections of one
// replica, which the harness derives at every scrape (package scrape) for
// its chart; the rule sums the states itself.
const ServerSeries = "soak_replica_server_backends"

// DefaultServerSlack and DefaultServerSamples bound the server_within_client
// rule: the server may show up to DefaultServerSlack backends more than the
// client counts open connections for up to DefaultServerSamples samples in a
// row. A connection the client has just closed stays on the server for the
// moment its backend takes to exit, and the client's count and the server's
// are read at slightly different times; a backend the client never counts
// stays.
const (
	DefaultServerSlack   = 1
	DefaultServerSamples = 5
)

// DefaultPinnedFor is how long every pool connection may stay in use, with
// callers waiting for one, before the pool counts as pinned. Jobs of the
// soak config take milliseconds; a pool pinned for 20 s is held by
// something that will not give it back, such as un-closed *sql.Rows.
const DefaultPinnedFor = 20 * time.Second

// Result is the state of one rule.
type Result struct {
	Rule    string  `json:"rule"`
	Replica string  `json:"replica,omitempty"` // the replica it judges, when several are soaked
	Text    string  `json:"text"`              // the rule, for people
	Series  string  `json:"series,omitempty"`  // the series it reads, as keyed in the report
	Applies bool    `json:"applies"`           // the target exposes what the rule reads
	Broken  bool    `json:"broken"`
	At      float64 `json:"at,omitempty"`    // seconds into the soak when it first broke
	Worst   float64 `json:"worst,omitempty"` // the worst value seen
	Limit   float64 `json:"limit,omitempty"` // the bound, for charts
	Detail  string  `json:"detail"`
}

// Checker follows the rules sample by sample. The zero value is not usable;
// call New.
type Checker struct {
	pinnedFor float64
	replica   string
	results   map[string]*Result
	order     []string

	firstRuns, lastRuns float64
	runsSeen            bool
	lastOpened          float64

	stoppedEarly bool // end-of-soak rules cannot be judged

	pinStart    float64 // start of the current pinned streak; <0 when none
	pinWaitFrom float64 // go_sql_wait_count_total at that start

	serverStreak int // samples in a row with the server above the client
}

// New returns a Checker that judges a pool pinned after pinnedFor.
func New(pinnedFor time.Duration) *Checker { return NewReplica("", pinnedFor) }

// NewReplica returns a Checker of one of several replicas soaked at once:
// it is given only the samples labelled replica, and its results name it.
func NewReplica(replica string, pinnedFor time.Duration) *Checker {
	c := &Checker{pinnedFor: pinnedFor.Seconds(), replica: replica, results: make(map[string]*Result), pinStart: -1}
	c.add(RuleOneHandle, "worker_db_handles_open ≤ 1")
	c.add(RuleOneOpen, `worker_db_init_calls_total{result="opened"} stays at 1`)
	c.add(RulePoolLimit, "go_sql_open_connections ≤ go_sql_max_open_connections")
	c.add(RulePoolPinned, "the pool is not held fully in use while callers wait")
	c.add(RuleJobsRan, "worker_job_runs_total rose: jobs ran")
	c.add(RuleTickOnce, "worker_job_duplicate_ticks stays 0: no tick has two success rows")
	c.add(RuleServerConn, fmt.Sprintf("server backends (worker_db_server_connections) ≤ worker_db_connections_open + %d, but for %d samples in a row", DefaultServerSlack, DefaultServerSamples))
	return c
}

func (c *Checker) add(rule, text string) {
	if c.replica != "" {
		text = "replica " + c.replica + ": " + text
	}
	c.results[rule] = &Result{Rule: rule, Replica: c.replica, Text: text, Detail: "not exposed by the target"}
	c.order = append(c.order, rule)
}

// detail prefixes a detail with the replica it is about.
func (c *Checker) detail(format string, args ...any) string {
	d := fmt.Sprintf(format, args...)
	if c.replica != "" {
		d = "replica " + c.replica + ": " + d
	}
	return d
}

// key returns the report key of a series of this Checker's replica.
func (c *Checker) key(name string, labels ...string) string {
	if c.replica != "" {
		labels = append(labels, ReplicaLabel, c.replica)
	}
	m := model.Metric{model.MetricNameLabel: model.LabelValue(name)}
	for i := 0; i+1 < len(labels); i += 2 {
		m[model.LabelName(labels[i])] = model.LabelValue(labels[i+1])
	}
	return seriesKey(m)
}

// breakAt marks rule broken at t unless it already is, and keeps the worst
// value (the highest) with its detail.
func (c *Checker) breakAt(rule string, t, v float64, detail string) {
	r := c.results[rule]
	if !r.Broken || v >= r.Worst {
		r.Detail = detail
	}
	r.Worst = max(r.Worst, v)
	if !r.Broken {
		r.Broken = true
		r.At = t
	}
}

// observeRuns follows jobs_ran: the job runs, summed over the labels.
func (c *Checker) observeRuns(runs float64) {
	r := c.results[RuleJobsRan]
	r.Applies, r.Series = true, c.key("worker_job_runs_total")
	if !c.runsSeen {
		c.firstRuns, c.runsSeen = runs, true
	}
	c.lastRuns = runs
	r.Detail = c.detail("%g job runs during the soak", c.lastRuns-c.firstRuns)
}

// observeDuplicates checks each_tick_once: the ticks, by job, that have
// more than one success row.
func (c *Checker) observeDuplicates(t float64, dups map[string]float64) {
	r := c.results[RuleTickOnce]
	r.Applies = true
	var total float64
	var jobs []string
	for job, n := range dups {
		total += n
		if n > 0 {
			jobs = append(jobs, fmt.Sprintf("%s (%g)", job, n))
		}
	}
	slices.Sort(jobs)
	r.Worst = max(r.Worst, total)
	if !r.Broken {
		r.Detail = c.detail("no tick ran twice")
	}
	if total > 0 {
		c.breakAt(RuleTickOnce, t, total, c.detail("ticks with two success rows: %s", strings.Join(jobs, ", ")))
	}
}

// Record adds the result of a rule judged outside the Checker, such as
// RuleCleanExit.
func (c *Checker) Record(r Result) {
	if _, ok := c.results[r.Rule]; !ok {
		c.order = append(c.order, r.Rule)
	}
	c.results[r.Rule] = &r
}

// scrape is what one scrape says of the rules' series.
type scrape struct {
	runs                            float64
	runsFound                       bool
	server, client                  float64
	serverFound, clientFound        bool
	dups                            map[string]float64 // by job
	maxOpen, open, inUse, waitCount map[string]float64 // by db_name
}

// Observe checks one scrape taken t seconds into the soak.
func (c *Checker) Observe(t float64, vec model.Vector) {
	sc := scrape{dups: map[string]float64{},
		maxOpen: map[string]float64{}, open: map[string]float64{}, inUse: map[string]float64{}, waitCount: map[string]float64{}}
	for _, s := range vec {
		v := float64(s.Value)
		db := string(s.Metric["db_name"])
		switch s.Metric[model.MetricNameLabel] {
		case "worker_db_handles_open":
			c.observeHandles(t, v)
		case "worker_db_init_calls_total":
			if s.Metric["result"] == "opened" {
				c.observeOpened(t, v)
			}
		case "worker_job_runs_total":
			sc.runs += v
			sc.runsFound = true
		case "go_sql_max_open_connections":
			sc.maxOpen[db] = v
		case "go_sql_open_connections":
			sc.open[db] = v
		case "go_sql_in_use_connections":
			sc.inUse[db] = v
		case "go_sql_wait_count_total":
			sc.waitCount[db] = v
		case "worker_db_server_connections":
			sc.server, sc.serverFound = sc.server+v, true
		case "worker_db_connections_open":
			sc.client, sc.clientFound = sc.client+v, true
		case "worker_job_duplicate_ticks":
			sc.dups[string(s.Metric["job_name"])] = v
		}
	}
	if len(sc.dups) > 0 {
		c.observeDuplicates(t, sc.dups)
	}
	if sc.serverFound && sc.clientFound {
		c.observeServer(t, sc.server, sc.client)
	}
	if sc.runsFound {
		c.observeRuns(sc.runs)
	}
	c.observePool(t, &sc)
}

// observeHandles judges RuleOneHandle on one sample of
// worker_db_handles_open.
func (c *Checker) observeHandles(t, v float64) {
	r := c.results[RuleOneHandle]
	r.Applies, r.Series, r.Limit = true, c.key("worker_db_handles_open"), 1
	if !r.Broken {
		r.Detail = c.detail("%g handle(s) open", v)
	}
	r.Worst = max(r.Worst, v)
	if v > 1 {
		c.breakAt(RuleOneHandle, t, v, c.detail("%g handles open at once", v))
	}
}

// observeOpened judges RuleOneOpen on one sample of
// worker_db_init_calls_total{result="opened"}.
func (c *Checker) observeOpened(t, v float64) {
	r := c.results[RuleOneOpen]
	r.Applies, r.Series, r.Limit = true, c.key("worker_db_init_calls_total", "result", "opened"), 1
	c.lastOpened = v
	r.Worst = max(r.Worst, v)
	if !r.Broken {
		r.Detail = c.detail("opened %g time(s)", v)
	}
	if v > 1 {
		c.breakAt(RuleOneOpen, t, v, c.detail("Init opened a handle %g times", v))
	}
}

// observePool judges RulePoolLimit and RulePoolPinned on one scrape's
// go_sql_* series of each database.
func (c *Checker) observePool(t float64, sc *scrape) {
	pinned := false
	for db, limit := range sc.maxOpen {
		if limit <= 0 {
			continue // 0 means unlimited
		}
		if o, ok := sc.open[db]; ok {
			r := c.results[RulePoolLimit]
			r.Applies, r.Series, r.Limit = true, c.dbKey("go_sql_open_connections", db), limit
			r.Worst = max(r.Worst, o)
			if !r.Broken {
				r.Detail = c.detail("at most %g of %g open", r.Worst, limit)
			}
			if o > limit {
				c.breakAt(RulePoolLimit, t, o, c.detail("%g connections open, limit %g", o, limit))
			}
		}
		if u, ok := sc.inUse[db]; ok && c.observePinned(t, db, u, limit, sc.waitCount[db]) {
			pinned = true
		}
	}
	if !pinned {
		c.pinStart = -1
	}
}

// observePinned judges RulePoolPinned on one database's sample: u
// connections in use of limit, waits callers counted so far. It reports
// whether the pool is fully in use.
func (c *Checker) observePinned(t float64, db string, u, limit, waits float64) bool {
	r := c.results[RulePoolPinned]
	r.Applies, r.Series, r.Limit = true, c.dbKey("go_sql_in_use_connections", db), limit
	if !r.Broken {
		r.Detail = c.detail("never held fully in use with callers waiting")
	}
	if u < limit {
		return false
	}
	if c.pinStart < 0 {
		c.pinStart, c.pinWaitFrom = t, waits
	}
	if held := t - c.pinStart; held >= c.pinnedFor && waits > c.pinWaitFrom {
		c.breakAt(RulePoolPinned, t, held, c.detail("all %g connections in use for %.0fs while %g callers waited",
			limit, held, waits-c.pinWaitFrom))
	}
	return true
}

// observeServer judges RuleServerConn on one sample: server backends of
// this replica, client-side open connections.
func (c *Checker) observeServer(t, server, client float64) {
	r := c.results[RuleServerConn]
	r.Applies, r.Series = true, c.key(ServerSeries)
	excess := server - client
	r.Worst = max(r.Worst, excess)
	if excess <= DefaultServerSlack {
		c.serverStreak = 0
		if !r.Broken {
			r.Detail = c.detail("server backends at most %g above the client's open connections", r.Worst)
		}
		return
	}
	c.serverStreak++
	if c.serverStreak > DefaultServerSamples {
		c.breakAt(RuleServerConn, t, excess, c.detail("%g server backends, %g client-side connections open: %g the client does not count, for %d samples in a row",
			server, client, excess, c.serverStreak))
	}
}

// dbKey returns the report key of a go_sql_* series of db.
func (c *Checker) dbKey(name, db string) string {
	if db == "" {
		return c.key(name)
	}
	return c.key(name, "db_name", db)
}

// seriesKey returns the report key of m, as package series keys it: the
// name, then the labels sorted in braces.
func seriesKey(m model.Metric) string {
	name := string(m[model.MetricNameLabel])
	var names []string
	for k := range m {
		if k != model.MetricNameLabel {
			names = append(names, string(k))
		}
	}
	if len(names) == 0 {
		return name
	}
	slices.Sort(names)
	var b strings.Builder
	b.WriteString(name + "{")
	for i, k := range names {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s=%q", k, m[model.LabelName(k)])
	}
	b.WriteByte('}')
	return b.String()
}

// Broken returns the rules broken so far.
func (c *Checker) Broken() []Result {
	var out []Result
	for _, name := range c.order {
		if r := c.results[name]; r.Broken {
			out = append(out, *r)
		}
	}
	return out
}

// JobRuns returns how many job runs the soak has seen so far, and whether
// the target exposes them.
func (c *Checker) JobRuns() (float64, bool) {
	return c.lastRuns - c.firstRuns, c.runsSeen
}

// StoppedEarly tells the Checker that the soak was cut short by another
// alarm, so that the rules judged at the end (jobs ran, Init opened once)
// are not judged on a soak too short for them.
func (c *Checker) StoppedEarly() { c.stoppedEarly = true }

// Finish returns every rule with the ones that can only be judged at the
// end of the soak applied. It does not change the Checker, so it may be
// called at any time.
func (c *Checker) Finish() []Result {
	out := make([]Result, 0, len(c.order))
	for _, name := range c.order {
		r := *c.results[name]
		switch {
		case c.stoppedEarly && !r.Broken && (name == RuleJobsRan || name == RuleOneOpen):
			r.Detail += " (not judged: stopped early)"
		case name == RuleJobsRan && r.Applies && c.lastRuns <= c.firstRuns:
			r.Broken = true
			r.Detail = c.detail("no job ran during the soak: it proves nothing")
		case name == RuleOneOpen && r.Applies && !r.Broken && c.lastOpened != 1:
			r.Broken = true
			r.Worst = c.lastOpened
			r.Detail = c.detail("Init opened a handle %g times, want 1", c.lastOpened)
		}
		out = append(out, r)
	}
	return out
}

// RuleServerTotal is the rule of a Cluster.
const RuleServerTotal = "server_within_clients"

// ServerTotalSeries is the server's count of its client backends, the
// harness's own excepted, read by the harness (package pgprobe).
const ServerTotalSeries = "soak_server_backends"

// Cluster follows RuleServerTotal over every replica soaked at once: the
// server's count of client backends may not exceed the sum of the
// replicas' client-side open connections by more than DefaultServerSlack
// per replica for more than DefaultServerSamples samples in a row. It sees
// a backend that no replica counts even when it does not carry a replica's
// application_name, which server_within_client cannot see.
type Cluster struct {
	r      Result
	streak int
}

// NewCluster returns a Cluster that has seen nothing.
func NewCluster() *Cluster {
	return &Cluster{r: Result{Rule: RuleServerTotal, Series: ServerTotalSeries,
		Text:   fmt.Sprintf("server's client backends (pg_stat_activity) ≤ Σ replicas' worker_db_connections_open + %d per replica, but for %d samples in a row", DefaultServerSlack, DefaultServerSamples),
		Detail: "not exposed by the target"}}
}

// Observe checks one combined scrape of the replicas and the server.
func (c *Cluster) Observe(t float64, vec model.Vector) {
	var server, client float64
	serverFound := false
	replicas := map[model.LabelValue]bool{}
	for _, s := range vec {
		switch s.Metric[model.MetricNameLabel] {
		case ServerTotalSeries:
			server, serverFound = float64(s.Value), true
		case "worker_db_connections_open":
			client += float64(s.Value)
			replicas[s.Metric[ReplicaLabel]] = true
		}
	}
	if !serverFound || len(replicas) == 0 {
		return
	}
	r := &c.r
	r.Applies = true
	slack := float64(DefaultServerSlack * len(replicas))
	excess := server - client
	r.Worst = max(r.Worst, excess)
	if excess <= slack {
		c.streak = 0
		if !r.Broken {
			r.Detail = fmt.Sprintf("server backends at most %g above the %d replicas' open connections", r.Worst, len(replicas))
		}
		return
	}
	c.streak++
	if c.streak > DefaultServerSamples && (!r.Broken || excess >= r.Worst) {
		r.Detail = fmt.Sprintf("%g backends on the server, %g client-side connections open over %d replicas: %g no replica counts, for %d samples in a row",
			server, client, len(replicas), excess, c.streak)
		if !r.Broken {
			r.Broken, r.At = true, t
		}
	}
}

// Result returns the rule's state.
func (c *Cluster) Result() Result { return c.r }
