// Package invariant checks the rules that hold at every moment in a healthy
// worker, whatever the trend: one database handle, one opened Init, a pool
// within its limit and not pinned at it, and jobs that run.
//
// A rule applies only when the target exposes the metrics it reads, so a
// generic Go service soaked with --target passes them all as "not
// applicable". Unlike trends, rules are judged on warm-up samples too: a
// second handle is wrong from the first second on.
package invariant

import (
	"fmt"
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
)

// DefaultPinnedFor is how long every pool connection may stay in use, with
// callers waiting for one, before the pool counts as pinned. Jobs of the
// soak config take milliseconds; a pool pinned for 20 s is held by
// something that will not give it back, such as un-closed *sql.Rows.
const DefaultPinnedFor = 20 * time.Second

// Result is the state of one rule.
type Result struct {
	Rule    string  `json:"rule"`
	Text    string  `json:"text"`             // the rule, for people
	Series  string  `json:"series,omitempty"` // the series it reads, as keyed in the report
	Applies bool    `json:"applies"`          // the target exposes what the rule reads
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
	results   map[string]*Result
	order     []string

	firstRuns, lastRuns float64
	runsSeen            bool
	lastOpened          float64

	stoppedEarly bool // end-of-soak rules cannot be judged

	pinStart    float64 // start of the current pinned streak; <0 when none
	pinWaitFrom float64 // go_sql_wait_count_total at that start
}

// New returns a Checker that judges a pool pinned after pinnedFor.
func New(pinnedFor time.Duration) *Checker {
	c := &Checker{pinnedFor: pinnedFor.Seconds(), results: make(map[string]*Result), pinStart: -1}
	c.add(RuleOneHandle, "worker_db_handles_open ≤ 1")
	c.add(RuleOneOpen, `worker_db_init_calls_total{result="opened"} stays at 1`)
	c.add(RulePoolLimit, "go_sql_open_connections ≤ go_sql_max_open_connections")
	c.add(RulePoolPinned, "the pool is not held fully in use while callers wait")
	c.add(RuleJobsRan, "worker_job_runs_total rose: jobs ran")
	return c
}

func (c *Checker) add(rule, text string) {
	c.results[rule] = &Result{Rule: rule, Text: text, Detail: "not exposed by the target"}
	c.order = append(c.order, rule)
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

// Record adds the result of a rule judged outside the Checker, such as
// RuleCleanExit.
func (c *Checker) Record(r Result) {
	if _, ok := c.results[r.Rule]; !ok {
		c.order = append(c.order, r.Rule)
	}
	c.results[r.Rule] = &r
}

// Observe checks one scrape taken t seconds into the soak.
func (c *Checker) Observe(t float64, vec model.Vector) {
	var (
		runs                            float64
		runsFound                       bool
		maxOpen, open, inUse, waitCount = map[string]float64{}, map[string]float64{}, map[string]float64{}, map[string]float64{}
	)
	for _, s := range vec {
		v := float64(s.Value)
		db := string(s.Metric["db_name"])
		switch s.Metric[model.MetricNameLabel] {
		case "worker_db_handles_open":
			r := c.results[RuleOneHandle]
			r.Applies, r.Series, r.Limit = true, "worker_db_handles_open", 1
			if !r.Broken {
				r.Detail = fmt.Sprintf("%g handle(s) open", v)
			}
			r.Worst = max(r.Worst, v)
			if v > 1 {
				c.breakAt(RuleOneHandle, t, v, fmt.Sprintf("%g handles open at once", v))
			}
		case "worker_db_init_calls_total":
			if s.Metric["result"] != "opened" {
				continue
			}
			r := c.results[RuleOneOpen]
			r.Applies, r.Series, r.Limit = true, `worker_db_init_calls_total{result="opened"}`, 1
			c.lastOpened = v
			r.Worst = max(r.Worst, v)
			if !r.Broken {
				r.Detail = fmt.Sprintf("opened %g time(s)", v)
			}
			if v > 1 {
				c.breakAt(RuleOneOpen, t, v, fmt.Sprintf("Init opened a handle %g times", v))
			}
		case "worker_job_runs_total":
			runs += v
			runsFound = true
		case "go_sql_max_open_connections":
			maxOpen[db] = v
		case "go_sql_open_connections":
			open[db] = v
		case "go_sql_in_use_connections":
			inUse[db] = v
		case "go_sql_wait_count_total":
			waitCount[db] = v
		}
	}

	if runsFound {
		r := c.results[RuleJobsRan]
		r.Applies, r.Series = true, "worker_job_runs_total"
		if !c.runsSeen {
			c.firstRuns, c.runsSeen = runs, true
		}
		c.lastRuns = runs
		r.Detail = fmt.Sprintf("%g job runs during the soak", c.lastRuns-c.firstRuns)
	}

	pinned := false
	for db, limit := range maxOpen {
		if limit <= 0 {
			continue // 0 means unlimited
		}
		if o, ok := open[db]; ok {
			r := c.results[RulePoolLimit]
			r.Applies, r.Series, r.Limit = true, seriesKey("go_sql_open_connections", db), limit
			r.Worst = max(r.Worst, o)
			if !r.Broken {
				r.Detail = fmt.Sprintf("at most %g of %g open", r.Worst, limit)
			}
			if o > limit {
				c.breakAt(RulePoolLimit, t, o, fmt.Sprintf("%g connections open, limit %g", o, limit))
			}
		}
		if u, ok := inUse[db]; ok {
			r := c.results[RulePoolPinned]
			r.Applies, r.Series, r.Limit = true, seriesKey("go_sql_in_use_connections", db), limit
			if !r.Broken {
				r.Detail = "never held fully in use with callers waiting"
			}
			if u >= limit {
				pinned = true
				if c.pinStart < 0 {
					c.pinStart, c.pinWaitFrom = t, waitCount[db]
				}
				if held := t - c.pinStart; held >= c.pinnedFor && waitCount[db] > c.pinWaitFrom {
					c.breakAt(RulePoolPinned, t, held, fmt.Sprintf("all %g connections in use for %.0fs while %g callers waited",
						limit, held, waitCount[db]-c.pinWaitFrom))
				}
			}
		}
	}
	if !pinned {
		c.pinStart = -1
	}
}

// seriesKey returns the report key of a go_sql_* series of db.
func seriesKey(name, db string) string {
	if db == "" {
		return name
	}
	return fmt.Sprintf("%s{db_name=%q}", name, db)
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
			r.Detail = "no job ran during the soak: it proves nothing"
		case name == RuleOneOpen && r.Applies && !r.Broken && c.lastOpened != 1:
			r.Broken = true
			r.Worst = c.lastOpened
			r.Detail = fmt.Sprintf("Init opened a handle %g times, want 1", c.lastOpened)
		}
		out = append(out, r)
	}
	return out
}
