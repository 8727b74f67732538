// Package runner drives one soak: it scrapes the target at a fixed
// interval, records the watched series, follows the invariants, stops early
// under fail-fast, and judges every series at the end.
package runner

import (
	"context"
	"errors"
	"fmt"
	"io"
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
}

// Result is what a soak found.
type Result struct {
	Start     time.Time
	Elapsed   time.Duration
	Config    Config
	Recording *series.Recording
	// Verdicts holds the judgement of every recorded series, by key.
	Verdicts   map[string]detect.Verdict
	Invariants []invariant.Result
	Scrapes    int
	Failures   int
	// StoppedEarly is set when fail-fast ended the soak.
	StoppedEarly bool
	// Err is why the soak could not be done, or nil.
	Err error

	checker *invariant.Checker
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

// Status is "steady", "leak" (a leak or a broken invariant: the alarm) or
// "error" (could not soak).
func (r *Result) Status() string {
	switch {
	case len(r.Leaks()) > 0 || len(r.Broken()) > 0:
		return "leak"
	case r.Err != nil:
		return "error"
	default:
		return "steady"
	}
}

// Record adds a rule judged outside the soak loop, such as the target's
// clean exit, and refreshes Invariants.
func (r *Result) Record(inv invariant.Result) {
	r.checker.Record(inv)
	r.Invariants = r.checker.Finish()
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
		parts = append(parts, fmt.Sprintf("%s rising %s/h", l.Series, rate))
	}
	for _, b := range r.Broken() {
		parts = append(parts, fmt.Sprintf("broken %s (%s)", b.Rule, b.Detail))
	}
	switch r.Status() {
	case "leak":
		word := "LEAK"
		if len(r.Leaks()) == 0 {
			word = "INVARIANT BROKEN"
		}
		return fmt.Sprintf("%s after %s: %s.", word, round(r.Elapsed), strings.Join(parts, "; "))
	case "error":
		return fmt.Sprintf("COULD NOT SOAK after %s: %v.", round(r.Elapsed), r.Err)
	}
	applies := 0
	for _, inv := range r.Invariants {
		if inv.Applies {
			applies++
		}
	}
	return fmt.Sprintf("STEADY: no leak in %d series over %s judged after %s warm-up; %d invariants held.",
		len(r.Verdicts), round(max(judged, 0)), round(r.Config.Warmup), applies)
}

// signed formats a slope with its sign and three significant digits.
func signed(f float64) string {
	if math.Abs(f) >= 100 {
		return fmt.Sprintf("%+.0f", f)
	}
	return fmt.Sprintf("%+.3g", f)
}

func round(d time.Duration) time.Duration { return d.Round(time.Second) }

// Run soaks the target. It returns the Result, also when the soak could not
// be done (then with Result.Err set and returned).
func Run(ctx context.Context, cfg Config) (*Result, error) {
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
	res := &Result{
		Start:     time.Now(),
		Config:    cfg,
		Recording: series.NewRecording(cfg.Watch),
		Verdicts:  make(map[string]detect.Verdict),
		checker:   invariant.New(cfg.PinnedFor),
	}
	res.Err = res.loop(ctx)
	if res.StoppedEarly {
		res.checker.StoppedEarly()
	}
	res.Elapsed = time.Since(res.Start)
	res.judge()
	res.Invariants = res.checker.Finish()
	return res, res.Err
}

// loop scrapes until the duration is over, fail-fast fires or the soak
// cannot go on.
func (r *Result) loop(ctx context.Context) error {
	cfg := r.Config
	deadline := time.NewTimer(cfg.Duration)
	defer deadline.Stop()
	tick := time.NewTicker(cfg.Interval)
	defer tick.Stop()
	lastProgress := time.Time{}
	failStreak, okScrapes := 0, 0
	var lastErr error

	for {
		t := time.Since(r.Start).Seconds()
		vec, err := cfg.Scraper.Scrape(ctx)
		r.Scrapes++
		switch {
		case ctx.Err() != nil:
			return ErrInterrupted
		case err != nil:
			r.Failures++
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
			r.Recording.Add(t, vec)
			r.checker.Observe(t, vec)
			if len(r.Recording.Series()) == 0 && okScrapes >= emptyScrapes {
				return fmt.Errorf("%w (%s)", ErrNoWatchedSeries, strings.Join(names(cfg.Watch), ", "))
			}
			if cfg.FailFast && r.certain(t) {
				r.StoppedEarly = true
				return nil
			}
		}
		if cfg.Progress != nil && time.Since(lastProgress) >= cfg.ProgressEvery {
			lastProgress = time.Now()
			r.progress(cfg.Progress)
		}

		select {
		case <-ctx.Done():
			return ErrInterrupted
		case <-deadline.C:
			if len(r.Recording.Series()) == 0 {
				return fmt.Errorf("%w (%s)", ErrNoWatchedSeries, strings.Join(names(cfg.Watch), ", "))
			}
			return nil
		case <-cfg.Died:
			return ErrTargetDied
		case <-tick.C:
		}
	}
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

func names(specs []series.Spec) []string {
	out := make([]string, len(specs))
	for i, s := range specs {
		out[i] = s.Name
	}
	return out
}

// params returns the detector parameters of s.
func params(s *series.Series, failFast bool) detect.Params {
	p := detect.Params{Kind: s.Spec.Kind, Tolerance: s.Spec.Tolerance, Floor: s.Spec.Floor}
	if failFast {
		p.Alpha = detect.DefaultFailFastAlpha
		p.MaxPoints = detect.DefaultFailFastMaxPoints
		p.SkipSlopeUnlessLeak = true
	}
	return p
}

// certain reports whether a leak is certain or a rule broke, t seconds in.
// Leaks found here are kept, so the final verdict cannot lose them.
func (r *Result) certain(t float64) bool {
	stop := len(r.checker.Broken()) > 0
	warm := r.Config.Warmup.Seconds()
	if t < warm {
		return stop
	}
	for _, s := range r.Recording.Series() {
		ts, vs := s.After(warm)
		if v := detect.Analyze(ts, vs, params(s, true)); v.Leak {
			r.Verdicts[s.Key] = v
			stop = true
		}
	}
	return stop
}

// judge gives every recorded series its final verdict, keeping any leak
// that fail-fast already found.
func (r *Result) judge() {
	warm := r.Config.Warmup.Seconds()
	for _, s := range r.Recording.Series() {
		ts, vs := s.After(warm)
		v := detect.Analyze(ts, vs, params(s, false))
		if early, ok := r.Verdicts[s.Key]; ok && early.Leak && !v.Leak {
			early.Slope, early.Intercept = v.Slope, v.Intercept
			if early.Slope <= 0 {
				early.Slope, early.Intercept = detect.TheilSen(ts, vs)
			}
			v = early
		}
		r.Verdicts[s.Key] = v
	}
}

// progressNames are shown in the progress line when present, in order.
var progressNames = []struct{ name, label string }{
	{"process_open_fds", "fds"},
	{"go_sql_open_connections", "conns"},
	{"go_sql_in_use_connections", "in-use"},
	{"worker_db_connections_open", "driver-conns"},
	{"worker_db_handles_open", "handles"},
	{"go_goroutines", "goroutines"},
	{"process_resident_memory_bytes", "rss"},
	{"go_memstats_heap_inuse_bytes", "heap"},
}

// progress writes one line: elapsed, remaining, current counts.
func (r *Result) progress(w io.Writer) {
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
	if runs, ok := r.checker.JobRuns(); ok {
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
