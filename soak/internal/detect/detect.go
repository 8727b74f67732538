// Package detect decides whether a sampled gauge is leaking.
//
// A series leaks when, over the samples taken after warm-up, all of these
// hold:
//
//  1. there are at least MinSamples of them;
//  2. the Mann–Kendall test finds an upward trend with p < Alpha (the
//     variance of S corrected for ties);
//  3. the Theil–Sen slope is positive;
//  4. the high-water mark of the last third of the samples stands above that
//     of the first third by more than the tolerance: an absolute number for
//     counts, a fraction of the early high-water mark (with a floor) for
//     memory;
//  5. the last third's high-water mark also stands above the middle third's:
//     the series is still rising at the end, it did not step up once and
//     stop.
//
// A trend test alone cries wolf on a pool that fills after warm-up or on a
// slow GC sawtooth; a high-water comparison alone cries wolf on a single
// spike at the end. Requiring both is the rule of thumb from soak-testing
// practice: slope and absolute delta.
package detect

import (
	"fmt"
	"math"
	"slices"
)

// Kind says how growth of a series is measured against its tolerance.
type Kind int

const (
	// Count is a gauge of things (FDs, connections, goroutines): its
	// tolerance is an absolute number of them.
	Count Kind = iota
	// Memory is a gauge of bytes: its tolerance is a fraction of the early
	// high-water mark, with an absolute floor.
	Memory
)

// String returns "count" or "memory".
func (k Kind) String() string {
	if k == Memory {
		return "memory"
	}
	return "count"
}

// MarshalText makes a Kind readable in report.json.
func (k Kind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText reads what MarshalText wrote.
func (k *Kind) UnmarshalText(b []byte) error {
	switch string(b) {
	case "count":
		*k = Count
	case "memory":
		*k = Memory
	default:
		return fmt.Errorf("unknown kind %q", b)
	}
	return nil
}

const (
	// DefaultAlpha is the one-sided Mann–Kendall significance required for
	// the final verdict. One test per series per soak: with a dozen series
	// the chance of any false trend stays near 1%, before the tolerance
	// check removes most of the rest.
	DefaultAlpha = 1e-3
	// DefaultFailFastAlpha is the significance required to stop early. The
	// test is repeated at every sample, so it is far stricter than
	// DefaultAlpha; a real leak of one unit per second reaches it (z ≈ 5)
	// after about 15 samples.
	DefaultFailFastAlpha = 1e-6
	// DefaultMinSamples is the fewest post-warm-up samples judged at all.
	// Below it each third holds fewer than 4 samples.
	DefaultMinSamples = 12
	// DefaultMaxPoints caps the points fed to the O(n²) statistics; longer
	// series are thinned evenly (30 min at 1 s is 1800 points).
	DefaultMaxPoints = 1000
	// DefaultFailFastMaxPoints caps the points of the repeated fail-fast
	// test so that it costs well under a millisecond per series.
	DefaultFailFastMaxPoints = 300
)

// Params tells Analyze how to judge one series.
type Params struct {
	Kind Kind
	// Tolerance is the growth of the high-water mark that is still healthy:
	// absolute for Count, a fraction of the early high-water mark for
	// Memory.
	Tolerance float64
	// Floor is, for Memory, the least absolute growth (in bytes) that can
	// count as a leak, so that a tiny heap does not turn a few KiB into 20%.
	Floor float64
	// Alpha is the significance required of the Mann–Kendall test.
	Alpha float64
	// MinSamples is the fewest samples judged; fewer give ReasonTooFew.
	MinSamples int
	// MaxPoints thins longer series before the O(n²) statistics.
	MaxPoints int
	// SkipSlopeUnlessLeak leaves Slope and Intercept at zero unless the
	// series leaks; the fail-fast path uses it to stay cheap.
	SkipSlopeUnlessLeak bool
}

// withDefaults fills zero fields of p.
func (p Params) withDefaults() Params {
	if p.Alpha <= 0 {
		p.Alpha = DefaultAlpha
	}
	if p.MinSamples <= 0 {
		p.MinSamples = DefaultMinSamples
	}
	if p.MaxPoints <= 0 {
		p.MaxPoints = DefaultMaxPoints
	}
	return p
}

// Verdict is the judgement of one series with the statistics behind it.
type Verdict struct {
	Leak   bool   `json:"leak"`
	Reason string `json:"reason"` // one short clause, for people

	N         int     `json:"n"`          // samples judged (after warm-up)
	Slope     float64 `json:"slope"`      // Theil–Sen slope, units per second
	Intercept float64 `json:"intercept"`  // Theil–Sen intercept at t=0
	S         float64 `json:"mk_s"`       // Mann–Kendall S
	Z         float64 `json:"mk_z"`       // Mann–Kendall z
	P         float64 `json:"mk_p"`       // one-sided p-value, upward trend
	EarlyHigh float64 `json:"early_high"` // high-water mark of the first third
	MidHigh   float64 `json:"mid_high"`   // high-water mark of the middle third
	LateHigh  float64 `json:"late_high"`  // high-water mark of the last third
	Growth    float64 `json:"growth"`     // LateHigh - EarlyHigh
	Allowed   float64 `json:"allowed"`    // growth tolerated, in the series' unit
}

// SlopePerHour returns the Theil–Sen slope in units per hour.
func (v Verdict) SlopePerHour() float64 { return v.Slope * 3600 }

// Analyze judges the samples (ts in seconds, xs the values) taken after
// warm-up. ts must be increasing.
func Analyze(ts, xs []float64, p Params) Verdict {
	p = p.withDefaults()
	n := min(len(ts), len(xs))
	ts, xs = ts[:n], xs[:n]
	v := Verdict{N: n}
	if n < p.MinSamples {
		v.Reason = fmt.Sprintf("too few samples (%d < %d)", n, p.MinSamples)
		if n > 0 {
			v.Slope, v.Intercept = TheilSen(ts, xs)
		}
		return v
	}

	// High-water marks over the full, unthinned samples: a thinned series
	// could step over the one peak that matters.
	third := n / 3
	v.EarlyHigh = slices.Max(xs[:third])
	v.MidHigh = slices.Max(xs[third : n-third])
	v.LateHigh = slices.Max(xs[n-third:])
	v.Growth = v.LateHigh - v.EarlyHigh
	v.Allowed = p.Tolerance
	if p.Kind == Memory {
		v.Allowed = max(p.Tolerance*math.Abs(v.EarlyHigh), p.Floor)
	}

	tt, tx := Thin(ts, xs, p.MaxPoints)
	mk := MannKendallTest(tx)
	v.S, v.Z, v.P = mk.S, mk.Z, mk.P

	trend := mk.P < p.Alpha
	grew := v.Growth > v.Allowed
	rising := v.LateHigh > v.MidHigh
	if !p.SkipSlopeUnlessLeak || (trend && grew && rising) {
		v.Slope, v.Intercept = TheilSen(tt, tx)
	}

	num := func(f float64) string { return format(f, p.Kind) }
	switch {
	case !trend:
		v.Reason = fmt.Sprintf("no significant upward trend (p=%.2g)", mk.P)
	case !grew:
		v.Reason = fmt.Sprintf("high-water mark rose %s, within tolerance %s", num(v.Growth), num(v.Allowed))
	case !rising:
		v.Reason = fmt.Sprintf("stopped rising (late high %s ≤ middle high %s)", num(v.LateHigh), num(v.MidHigh))
	case v.Slope <= 0:
		v.Reason = "Theil–Sen slope is not positive"
	default:
		v.Leak = true
		v.Reason = fmt.Sprintf("keeps rising: high-water %s → %s (+%s > %s), p=%.2g",
			num(v.EarlyHigh), num(v.LateHigh), num(v.Growth), num(v.Allowed), mk.P)
	}
	return v
}

// HumanBytes formats a byte count in binary units.
func HumanBytes(v float64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	i := 0
	for math.Abs(v) >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%.0f B", v)
	}
	return fmt.Sprintf("%.1f %s", v, units[i])
}

// format formats a value compactly for its kind: memory in binary units,
// whole counts as integers, others with three significant digits.
func format(f float64, k Kind) string {
	if k == Memory {
		return HumanBytes(f)
	}
	if f == math.Trunc(f) && math.Abs(f) < 1e15 {
		return fmt.Sprintf("%.0f", f)
	}
	return fmt.Sprintf("%.3g", f)
}
