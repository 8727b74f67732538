// Package runner drives one soak: a Soak scrapes the target at a fixed
// interval, records the watched series, follows the invariants, stops early
// under fail-fast, and judges every series at the end into a Result.
package runner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/common/model"

	"github.com/sqlworker/worker/soak/internal/detect"
	"github.com/sqlworker/worker/soak/internal/invariant"
	"github.com/sqlworker/worker/soak/internal/series"
)

// Defaults of Config.
const (
	DefaultDuration          = 10 * time.Minute
	DefaultInterval          = time.Second
	DefaultWarmup            = 30 * time.Second
	DefaultProgressEvery     = 5 * time.Second
	DefaultMaxScrapeFailures = 5
	// emptyScrapes is how many successful scrapes without any watched
	// series end the soak: a target may register its collectors a moment
	// after it starts answering.
	emptyScrapes = 5
)

// Errors that mean the soak could not be done; the report still shows what
// was recorded up to them.
var (
	ErrNoWatchedSeries = errors.New("target exposes none of the watched series")
	ErrScrapesFailed   = errors.New("scrapes failed")
	ErrTargetDied      = errors.New("target died during the soak")
	ErrInterrupted     = errors.New("soak interrupted")
)

// Scraper fetches one exposition; *scrape.Scraper is one.
type Scraper interface {
	Scrape(ctx context.Context) (model.Vector, error)
}

// Config is one soak's settings.
type Config struct {
	Scraper  Scraper
	Duration time.Duration // total, warm-up included
	Interval time.Duration
	Warmup   time.Duration // samples before it are shown, not judged
	FailFast bool          // stop once a leak is certain or a rule broke
	Watch    []series.Spec
	// PinnedFor is invariant.DefaultPinnedFor when zero.
	PinnedFor time.Duration
	// MaxScrapeFailures in a row end the soak with ErrScrapesFailed.
	MaxScrapeFailures int
	// Progress gets a line every ProgressEvery; nil for none.
	Progress      io.Writer
	ProgressEvery time.Duration
	// Died, when not nil, is closed when the target process exits.
	Died <-chan struct{}
	// AfterWarmup, when not nil, is called once, from the scrape loop, with
	// the time of the first sample at or after warm-up: the soak takes
	// its base profiles then. It must not block.
	AfterWarmup func(t float64)
}

// Result is what a soak found; Soak produces it.
type Result struct {
	Start     time.Time
	Elapsed   time.Duration
	Config    Config
	Recording *series.Recording
	// Work holds the series of series.Work: recorded, not judged.
	Work *series.Recording
	// Verdicts holds the judgement of every recorded series, by key.
	Verdicts   map[string]detect.Verdict
	Invariants []invariant.Result
	Scrapes    int
	Failures   int
	// StoppedEarly is set when fail-fast ended the soak.
	StoppedEarly bool
	// StoppedAt is the time, in seconds into the soak, of the sample at
	// which fail-fast ended it; zero unless StoppedEarly.
	StoppedAt float64
	// Err is why the soak could not be done, or nil.
	Err error
	// Culprits says, by series key, where a leaking series (or the series
	// of a broken rule) grew, for the verdict: "from pkg.F (dir/file.go:12)".
	Culprits map[string]string
}

// Leak is one leaking series.
type Leak struct {
	Series  string
	Verdict detect.Verdict
}

// Leaks returns the leaking series in display order.
func (r *Result) Leaks() []Leak {
	var out []Leak
	for _, s := range r.Recording.Series() {
		if v, ok := r.Verdicts[s.Key]; ok && v.Leak {
			out = append(out, Leak{Series: s.Key, Verdict: v})
		}
	}
	return out
}

// Broken returns the broken invariants.
func (r *Result) Broken() []invariant.Result {
	var out []invariant.Result
	for _, inv := range r.Invariants {
		if inv.Broken {
			out = append(out, inv)
		}
	}
	return out
}

// Undecided returns the series that were too short or too noisy to decide,
// in display order.
func (r *Result) Undecided() []Leak {
	var out []Leak
	for _, s := range r.Recording.Series() {
		if v, ok := r.Verdicts[s.Key]; ok && !v.Outcome.Decided() {
			out = append(out, Leak{Series: s.Key, Verdict: v})
		}
	}
	return out
}

// Status is the outcome of a whole soak.
type Status int

// Statuses of a soak; their strings are what report.json holds.
const (
	// StatusSteady: no watched series leaks and every invariant held.
	StatusSteady Status = iota
	// StatusLeak: a series leaks or an invariant broke; the alarm.
	StatusLeak
	// StatusError: the soak could not be done; nothing was proven.
	StatusError
)

// String returns "steady", "leak" or "error".
func (s Status) String() string {
	switch s {
	case StatusLeak:
		return "leak"
	case StatusError:
		return "error"
	default:
		return "steady"
	}
}

// MarshalText makes a Status readable in report.json.
func (s Status) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads what MarshalText wrote.
func (s *Status) UnmarshalText(b []byte) error {
	for _, c := range []Status{StatusSteady, StatusLeak, StatusError} {
		if c.String() == string(b) {
			*s = c
			return nil
		}
	}
	return fmt.Errorf("unknown status %q", b)
}

// Status is StatusLeak on a leak or a broken invariant (the alarm),
// StatusError when the soak could not be done, and StatusSteady otherwise.
func (r *Result) Status() Status {
	switch {
	case len(r.Leaks()) > 0 || len(r.Broken()) > 0:
		return StatusLeak
	case r.Err != nil:
		return StatusError
	default:
		return StatusSteady
	}
}

// Record adds a rule judged after the soak, such as the target's clean
// exit, to Invariants, in place of a result of the same rule (and replica)
// if there is one.
func (r *Result) Record(inv invariant.Result) {
	for i := range r.Invariants {
		if r.Invariants[i].Rule == inv.Rule && r.Invariants[i].Replica == inv.Replica {
			r.Invariants[i] = inv
			return
		}
	}
	r.Invariants = append(r.Invariants, inv)
}

// Sentence returns the verdict in one sentence, naming each leaking series
// with its slope per hour and each broken rule.
func (r *Result) Sentence() string {
	judged := r.Elapsed - r.Config.Warmup
	var parts []string
	for _, l := range r.Leaks() {
		rate := signed(l.Verdict.SlopePerHour())
		if s := r.Recording.Get(l.Series); s != nil && s.Spec.Kind == detect.Memory {
			rate = "+" + detect.HumanBytes(l.Verdict.SlopePerHour())
		}
		parts = append(parts, fmt.Sprintf("%s rising %s/h", l.Series, rate)+r.culprit(l.Series))
	}
	for _, b := range r.Broken() {
		part := fmt.Sprintf("broken %s (%s)", b.Rule, b.Detail)
		if !slices.ContainsFunc(r.Leaks(), func(l Leak) bool { return l.Series == b.Series }) {
			part += r.culprit(b.Series)
		}
		parts = append(parts, part)
	}
	switch r.Status() {
	case StatusLeak:
		word := "LEAK"
		if len(r.Leaks()) == 0 {
			word = "INVARIANT BROKEN"
		}
		return fmt.Sprintf("%s after %s: %s.", word, round(r.Elapsed), strings.Join(parts, "; "))
	case StatusError:
		return fmt.Sprintf("COULD NOT SOAK after %s: %v.", round(r.Elapsed), r.Err)
	}
	applies := 0
	for _, inv := range r.Invariants {
		if inv.Applies {
			applies++
		}
	}
	undecided := ""
	if u := r.Undecided(); len(u) > 0 {
		var keys []string
		for _, l := range u {
			keys = append(keys, l.Series+" ("+l.Verdict.Outcome.String()+")")
		}
		undecided = fmt.Sprintf("; %d not decided: %s", len(u), strings.Join(keys, ", "))
	}
	return fmt.Sprintf("STEADY: no leak in %d series over %s judged after %s warm-up; %d invariants held%s.",
		len(r.Verdicts), round(max(judged, 0)), round(r.Config.Warmup), applies, undecided)
}

// culprit returns " " and where series grew, or "".
func (r *Result) culprit(series string) string {
	if c := r.Culprits[series]; c != "" {
		return " " + c
	}
	return ""
}

// signed formats a slope with its sign and three significant digits.
func signed(f float64) string {
	if math.Abs(f) >= 100 {
		return fmt.Sprintf("%+.0f", f)
	}
	return fmt.Sprintf("%+.3g", f)
}

func round(d time.Duration) time.Duration { return d.Round(time.Second) }

// Soak is one soak in progress: it owns the scrape loop, the recording, the
// invariant checker and the fail-fast test, and produces the Result. A Soak
// is used once: call Run or Replay, not both.
type Soak struct {
	cfg      Config
	res      *Result // filled as the soak goes
	checkers checkers
}

// New returns the Soak of cfg, with its defaults filled.
func New(cfg Config) *Soak {
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.ProgressEvery <= 0 {
		cfg.ProgressEvery = DefaultProgressEvery
	}
	if cfg.MaxScrapeFailures <= 0 {
		cfg.MaxScrapeFailures = DefaultMaxScrapeFailures
	}
	if cfg.PinnedFor <= 0 {
		cfg.PinnedFor = invariant.DefaultPinnedFor
	}
	return &Soak{
		cfg: cfg,
		res: &Result{
			Config:    cfg,
			Recording: series.NewRecording(cfg.Watch),
			Work:      series.NewRecording(series.Work),
			Verdicts:  make(map[string]detect.Verdict),
		},
		checkers: checkers{pinnedFor: cfg.PinnedFor, by: map[string]*invariant.Checker{}, cluster: invariant.NewCluster()},
	}
}

// checkers holds one invariant.Checker per replica: samples labelled
// invariant.ReplicaLabel go to their replica's, and a target without the
// label (one process) has one Checker of every sample. Samples without the
// label beside labelled ones are the harness's own (the server's backends)
// and belong to no replica; the cluster rule compares them with all
// replicas'.
type checkers struct {
	pinnedFor time.Duration
	by        map[string]*invariant.Checker
	order     []string
	cluster   *invariant.Cluster
}

func (cs *checkers) get(replica string) *invariant.Checker {
	c, ok := cs.by[replica]
	if !ok {
		c = invariant.NewReplica(replica, cs.pinnedFor)
		cs.by[replica] = c
		cs.order = append(cs.order, replica)
		slices.Sort(cs.order)
	}
	return c
}

// Observe hands each replica's samples to its Checker.
func (cs *checkers) Observe(t float64, vec model.Vector) {
	groups := map[string]model.Vector{}
	for _, smp := range vec {
		r := string(smp.Metric[invariant.ReplicaLabel])
		groups[r] = append(groups[r], smp)
	}
	if len(groups) > 1 {
		delete(groups, "")
	}
	for _, r := range slices.Sorted(maps.Keys(groups)) {
		cs.get(r).Observe(t, groups[r])
	}
	cs.cluster.Observe(t, vec)
}

// Broken returns the rules broken so far, replica by replica.
func (cs *checkers) Broken() []invariant.Result {
	var out []invariant.Result
	for _, r := range cs.order {
		out = append(out, cs.by[r].Broken()...)
	}
	if c := cs.cluster.Result(); c.Broken {
		out = append(out, c)
	}
	return out
}

// Finish returns every rule of every replica; see invariant.Checker.Finish.
func (cs *checkers) Finish() []invariant.Result {
	if len(cs.order) == 0 {
		cs.get("") // nothing scraped: every rule shows as not exposed
	}
	var out []invariant.Result
	for _, r := range cs.order {
		out = append(out, cs.by[r].Finish()...)
	}
	if c := cs.cluster.Result(); c.Applies {
		out = append(out, c) // only on PostgreSQL, where the server is read
	}
	return out
}

// StoppedEarly tells every Checker that the soak was cut short.
func (cs *checkers) StoppedEarly() {
	for _, c := range cs.by {
		c.StoppedEarly()
	}
}

// JobRuns returns the job runs seen so far over all replicas.
func (cs *checkers) JobRuns() (float64, bool) {
	var sum float64
	found := false
	for _, c := range cs.by {
		if n, ok := c.JobRuns(); ok {
			sum, found = sum+n, true
		}
	}
	return sum, found
}

// Run soaks the target. It returns the Result, also when the soak could not
// be done (then with Result.Err set and returned).
func (s *Soak) Run(ctx context.Context) (*Result, error) {
	s.res.Start = time.Now()
	s.res.Err = s.loop(ctx)
	s.res.Elapsed = time.Since(s.res.Start)
	s.finish()
	return s.res, s.res.Err
}

// Scrape is one successful scrape, T seconds into a soak.
type Scrape struct {
	T      float64
	Vector model.Vector
}

// Replay judges scrapes taken by someone else exactly as Run judges the
// ones it takes: the same recording, invariants, fail-fast test after every
// sample and final verdicts, without the waiting. Config.Scraper is not
// used. The detection-power study (soak/internal/power) judges thousands of
// soaks of the stand-in service through it in seconds. Elapsed is the time
// of the last scrape judged.
func (s *Soak) Replay(scrapes []Scrape) *Result {
	for _, sc := range scrapes {
		s.res.Scrapes++
		s.res.Elapsed = time.Duration(sc.T * float64(time.Second))
		if s.sample(sc.T, sc.Vector) {
			break
		}
	}
	if len(s.res.Recording.Series()) == 0 {
		s.res.Err = s.errNoWatched()
	}
	s.finish()
	return s.res
}

// finish gives the final verdicts once the scraping is over.
func (s *Soak) finish() {
	if s.res.StoppedEarly {
		s.checkers.StoppedEarly()
	}
	s.judge()
	s.res.Invariants = s.checkers.Finish()
}

// sample records one successful scrape taken t seconds in and reports
// whether fail-fast ends the soak with it.
func (s *Soak) sample(t float64, vec model.Vector) bool {
	s.res.Recording.Add(t, vec)
	s.res.Work.Add(t, vec)
	s.checkers.Observe(t, vec)
	if s.cfg.FailFast && s.certain(t) {
		s.res.StoppedEarly, s.res.StoppedAt = true, t
		return true
	}
	return false
}

// loop scrapes until the duration is over, fail-fast fires or the soak
// cannot go on.
func (s *Soak) loop(ctx context.Context) error {
	cfg, res := s.cfg, s.res
	deadline := time.NewTimer(cfg.Duration)
	defer deadline.Stop()
	tick := time.NewTicker(cfg.Interval)
	defer tick.Stop()
	lastProgress := time.Time{}
	failStreak, okScrapes := 0, 0
	var lastErr error

	end := res.Start.Add(cfg.Duration)
	warmed := cfg.AfterWarmup == nil
	for {
		t := time.Since(res.Start).Seconds()
		// A scrape is cut at the end of the soak: a slow target must not
		// stretch it past its duration.
		sctx, cancel := context.WithDeadline(ctx, end)
		vec, err := cfg.Scraper.Scrape(sctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return ErrInterrupted
		case err != nil && !time.Now().Before(end):
			// The soak's end cut this scrape: not the target's failure,
			// unless no scrape ever came back.
			if res.Scrapes == 0 {
				res.Scrapes, res.Failures, lastErr = 1, 1, err
			}
			return s.endErr(lastErr)
		}
		res.Scrapes++
		switch {
		case err != nil:
			res.Failures++
			failStreak++
			lastErr = err
			if died(cfg.Died) {
				return ErrTargetDied
			}
			if failStreak >= cfg.MaxScrapeFailures {
				return fmt.Errorf("%w: %d in a row, last: %w", ErrScrapesFailed, failStreak, lastErr)
			}
		default:
			failStreak = 0
			okScrapes++
			if s.sample(t, vec) {
				return nil
			}
			if !warmed && t >= cfg.Warmup.Seconds() {
				warmed = true
				cfg.AfterWarmup(t)
			}
			if len(res.Recording.Series()) == 0 && okScrapes >= emptyScrapes {
				return s.errNoWatched()
			}
		}
		if cfg.Progress != nil && time.Since(lastProgress) >= cfg.ProgressEvery {
			lastProgress = time.Now()
			s.progress(cfg.Progress)
		}

		select {
		case <-ctx.Done():
			return ErrInterrupted
		case <-deadline.C:
			return s.endErr(lastErr)
		case <-cfg.Died:
			return ErrTargetDied
		case <-tick.C:
		}
	}
}

// endErr is the loop's error at the end of the soak: none when it recorded
// watched series; when it did not, the scrapes' failure if every scrape
// failed (a timeout, a status, the body limit), not "exposes none".
func (s *Soak) endErr(lastErr error) error {
	res := s.res
	switch {
	case len(res.Recording.Series()) > 0:
		return nil
	case res.Scrapes == res.Failures && lastErr != nil:
		return fmt.Errorf("%w: %d of %d, last: %w", ErrScrapesFailed, res.Failures, res.Scrapes, lastErr)
	}
	return s.errNoWatched()
}

// errNoWatched is ErrNoWatchedSeries naming the watched series.
func (s *Soak) errNoWatched() error {
	names := make([]string, len(s.cfg.Watch))
	for i, sp := range s.cfg.Watch {
		names[i] = sp.Name
	}
	return fmt.Errorf("%w (%s)", ErrNoWatchedSeries, strings.Join(names, ", "))
}

func died(ch <-chan struct{}) bool {
	if ch == nil {
		return false
	}
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// certain reports whether a leak is certain or a rule broke, t seconds in.
// Leaks found here are kept, so the final verdict cannot lose them.
func (s *Soak) certain(t float64) bool {
	stop := len(s.checkers.Broken()) > 0
	warm := s.cfg.Warmup.Seconds()
	if t < warm {
		return stop
	}
	for _, sr := range s.res.Recording.Series() {
		ts, vs := sr.After(warm)
		if v := detect.Analyze(ts, vs, sr.Spec.FailFastParams()); v.Leak {
			s.res.Verdicts[sr.Key] = v
			stop = true
		}
	}
	return stop
}

// judge gives every recorded series its final verdict, keeping any leak
// that fail-fast already found.
func (s *Soak) judge() {
	warm := s.cfg.Warmup.Seconds()
	for _, sr := range s.res.Recording.Series() {
		ts, vs := sr.After(warm)
		v := detect.Analyze(ts, vs, sr.Spec.Params())
		if early, ok := s.res.Verdicts[sr.Key]; ok && early.Leak && !v.Leak {
			// The leak fail-fast found stands; the final statistics
			// (over every sample) draw its trend.
			early.Slope, early.Intercept = v.Slope, v.Intercept
			if early.Slope <= 0 {
				early.Slope, early.Intercept = detect.TheilSen(ts, vs)
			}
			v = early
		}
		s.res.Verdicts[sr.Key] = v
	}
}

// progressNames are shown in the progress line when present, in order.
var progressNames = []struct{ name, label string }{
	{"process_open_fds", "fds"},
	{"go_sql_open_connections", "conns"},
	{"go_sql_in_use_connections", "in-use"},
	{"worker_db_connections_open", "driver-conns"},
	{"worker_db_handles_open", "handles"},
	{"soak_server_backends", "server-backends"},
	{"go_goroutines", "goroutines"},
	{"process_resident_memory_bytes", "rss"},
	{"go_memstats_heap_inuse_bytes", "heap"},
}

// progress writes one line: elapsed, remaining, current counts.
func (s *Soak) progress(w io.Writer) {
	r := s.res
	el := time.Since(r.Start)
	phase := "soak"
	if el < r.Config.Warmup {
		phase = "warm-up"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "soak: %s %s elapsed, %s left", phase, round(el), round(max(r.Config.Duration-el, 0)))
	for _, p := range progressNames {
		v, ok := r.Recording.Sum(p.name)
		if !ok {
			continue
		}
		if strings.HasSuffix(p.name, "_bytes") {
			fmt.Fprintf(&b, " · %s %s", p.label, detect.HumanBytes(v))
		} else {
			fmt.Fprintf(&b, " · %s %g", p.label, v)
		}
	}
	if runs, ok := s.checkers.JobRuns(); ok {
		fmt.Fprintf(&b, " · jobs %g", runs)
	}
	if r.Failures > 0 {
		fmt.Fprintf(&b, " · %d failed scrapes", r.Failures)
	}
	fmt.Fprintln(w, b.String())
}

// SeriesNames returns the metric names of the leaking series and of the
// series behind broken rules, without labels, sorted and unique: what the
// self-test compares with its expectations.
func (r *Result) SeriesNames() []string {
	var out []string
	for _, l := range r.Leaks() {
		out = append(out, l.Series)
	}
	for _, b := range r.Broken() {
		if b.Series != "" {
			out = append(out, b.Series)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}
