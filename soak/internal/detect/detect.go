// Package detect decides whether a sampled gauge is leaking, judging each
// series against the noise it shows itself rather than a fixed allowance.
//
// Over the samples taken after warm-up, Analyze measures the series' noise:
// the peak-to-peak spread of its samples once the Theil–Sen trend is taken
// out. It is the smaller of two measures, each of which holds the whole
// noise of a series that has no trend: around one Theil–Sen line through
// all the samples (which overstates the noise of a leak that starts late:
// its bend counts as spread), and the largest of the three thirds, each
// around its own line (which overstates the noise of a coarse staircase: a
// third holding two steps of a slow leak has no slope of its own). See
// Noise and ThirdsNoise. The growth still healthy (the tolerance) is NoiseFactor times that
// noise, never less than a small floor. A series leaks when all of these
// hold:
//
//  1. there are at least MinSamples of them;
//  2. the Mann–Kendall test finds an upward trend with p < Alpha (the
//     variance of S corrected for ties);
//  3. the Theil–Sen slope is positive;
//  4. the high-water mark of the last third of the samples stands above that
//     of the first third by more than the tolerance;
//  5. the last third's high-water mark also stands above the middle third's:
//     the series is still rising at the end, it did not step up once and
//     stop.
//
// Why this sits at the limit of detection: with no trend, the growth of the
// high-water mark can never exceed the peak-to-peak of the detrended
// samples, so a factor above 1 cannot be crossed by noise, a sawtooth or a
// burst that closed again, however loud. A linear leak whose rise over the
// judged window is R moves the high-water mark by about ⅔R between the first
// and the last third, so with a factor of 1.5 it is caught once R exceeds
// about 2.25 times the noise, and once it spans three steps of a quiet
// series.
//
// A series with fewer than MinSamples samples is too short to decide. One
// whose fitted trend rose beyond the tolerance while its high-water marks
// did not is too noisy to decide: it is reported as such, not guessed.
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
	// floor is a number of them.
	Count Kind = iota
	// Memory is a gauge of bytes: its floor is a number of bytes, and a
	// fixed tolerance (--tolerance) is a fraction of the early high-water
	// mark.
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

// Outcome is the judgement of one series.
type Outcome int

const (
	// Steady: no growth beyond the series' noise.
	Steady Outcome = iota
	// Leaking: a trend, and high-water marks that keep rising beyond the
	// noise.
	Leaking
	// TooShort: fewer samples than MinSamples; nothing was decided.
	TooShort
	// TooNoisy: the fitted trend rose beyond the tolerance but the
	// high-water marks did not; a longer soak would decide.
	TooNoisy
)

// String returns "steady", "leak", "too short" or "too noisy".
func (o Outcome) String() string {
	switch o {
	case Leaking:
		return "leak"
	case TooShort:
		return "too short"
	case TooNoisy:
		return "too noisy"
	default:
		return "steady"
	}
}

// MarshalText makes an Outcome readable in report.json.
func (o Outcome) MarshalText() ([]byte, error) { return []byte(o.String()), nil }

// UnmarshalText reads what MarshalText wrote.
func (o *Outcome) UnmarshalText(b []byte) error {
	for _, c := range []Outcome{Steady, Leaking, TooShort, TooNoisy} {
		if c.String() == string(b) {
			*o = c
			return nil
		}
	}
	return fmt.Errorf("unknown outcome %q", b)
}

// Decided reports whether the outcome is a decision, steady or leak.
func (o Outcome) Decided() bool { return o == Steady || o == Leaking }

const (
	// DefaultAlpha is the one-sided Mann–Kendall significance required for
	// the final verdict. One test per series per soak: with a dozen series
	// the chance of any false trend stays near 1%, before the tolerance
	// check removes most of the rest.
	DefaultAlpha = 1e-3
	// DefaultFailFastAlpha is the significance required to stop early. The
	// test is repeated at every sample, so it is far stricter than
	// DefaultAlpha; a leak of one unit per second reaches it (z ≈ 5) after
	// 14 samples.
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
	// DefaultNoiseFactor is how many times its own noise the high-water
	// mark of a series must grow by to leak. Above 1, because without a
	// trend the growth never exceeds the noise; below 2, because a linear
	// leak moves the high-water mark by ⅔ of its rise, so that a rise of 3×
	// the noise is caught with margin.
	DefaultNoiseFactor = 1.5
	// DefaultCountFloor is the least tolerance of a count series, in units:
	// on a perfectly quiet series a rise of 3 steps over the judged window
	// moves the high-water mark by 2, which clears it, and a rise of 2
	// steps does not.
	DefaultCountFloor = 1.5
)

// Params tells Analyze how to judge one series.
type Params struct {
	Kind Kind
	// NoiseFactor times the measured noise is the tolerance; 0 means
	// DefaultNoiseFactor.
	NoiseFactor float64
	// Floor is the least tolerance, in the series' unit (units or bytes),
	// whatever the noise; 0 means DefaultCountFloor for Count. It keeps a
	// series that happened to sit still from turning one step into a leak.
	Floor float64
	// Fixed replaces the tolerance from the noise by Tolerance: an absolute
	// number for Count, a fraction of the early high-water mark (at least
	// Floor) for Memory. It is what --tolerance sets.
	Fixed     bool
	Tolerance float64
	// Alpha is the significance required of the Mann–Kendall test.
	Alpha float64
	// MinSamples is the fewest samples judged; fewer give TooShort.
	MinSamples int
	// MaxPoints thins longer series before the O(n²) statistics.
	MaxPoints int
	// SkipUnlessTrend leaves the slope, noise and tolerance at zero unless
	// Mann–Kendall finds a trend; the fail-fast path uses it to stay cheap.
	SkipUnlessTrend bool
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
	if p.NoiseFactor <= 0 {
		p.NoiseFactor = DefaultNoiseFactor
	}
	if p.Floor <= 0 && p.Kind == Count {
		p.Floor = DefaultCountFloor
	}
	return p
}

// Verdict is the judgement of one series with the statistics behind it.
type Verdict struct {
	Outcome Outcome `json:"outcome"`
	Leak    bool    `json:"leak"`   // Outcome == Leaking
	Reason  string  `json:"reason"` // one short clause, for people

	N         int     `json:"n"`          // samples judged (after warm-up)
	Span      float64 `json:"span"`       // seconds from the first judged sample to the last
	Slope     float64 `json:"slope"`      // Theil–Sen slope, units per second
	Intercept float64 `json:"intercept"`  // Theil–Sen intercept at t=0
	S         float64 `json:"mk_s"`       // Mann–Kendall S
	Z         float64 `json:"mk_z"`       // Mann–Kendall z
	P         float64 `json:"mk_p"`       // one-sided p-value, upward trend
	Noise     float64 `json:"noise"`      // peak-to-peak of the detrended samples
	EarlyHigh float64 `json:"early_high"` // high-water mark of the first third
	MidHigh   float64 `json:"mid_high"`   // high-water mark of the middle third
	LateHigh  float64 `json:"late_high"`  // high-water mark of the last third
	Growth    float64 `json:"growth"`     // LateHigh - EarlyHigh
	Rise      float64 `json:"rise"`       // Slope × Span: what the trend line rose
	Allowed   float64 `json:"allowed"`    // growth tolerated, in the series' unit
	// AllowedFrom says where Allowed comes from: "noise", "floor" or
	// "fixed".
	AllowedFrom string `json:"allowed_from"`
}

// SlopePerHour returns the Theil–Sen slope in units per hour.
func (v Verdict) SlopePerHour() float64 { return v.Slope * 3600 }

// Analyze judges the samples (ts in seconds, xs the values) taken after
// warm-up. ts must be increasing.
func Analyze(ts, xs []float64, p Params) Verdict {
	p = p.withDefaults()
	n := min(len(ts), len(xs))
	ts, xs = ts[:n], xs[:n]
	v := Verdict{N: n, Outcome: TooShort, P: 1}
	if n > 0 {
		v.Span = ts[n-1] - ts[0]
	}
	if n < p.MinSamples {
		v.Reason = fmt.Sprintf("too short to decide: %d samples, %d needed", n, p.MinSamples)
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

	tt, tx := Thin(ts, xs, p.MaxPoints)
	mk := MannKendallTest(tx)
	v.S, v.Z, v.P = mk.S, mk.Z, mk.P
	trend := mk.P < p.Alpha
	if p.SkipUnlessTrend && !trend {
		v.Outcome = Steady
		v.Reason = fmt.Sprintf("no significant upward trend (p=%.2g)", mk.P)
		return v
	}

	v.Slope, v.Intercept = TheilSen(tt, tx)
	v.Rise = v.Slope * v.Span
	v.Noise = min(Noise(ts, xs, v.Slope), ThirdsNoise(ts, xs, p.MaxPoints))
	v.Allowed, v.AllowedFrom = tolerance(v, p)

	grew := v.Growth > v.Allowed
	rising := v.LateHigh > v.MidHigh
	num := func(f float64) string { return format(f, p.Kind) }
	within := fmt.Sprintf("within tolerance %s (%s)", num(v.Allowed), v.allowedWhy(p))
	v.Outcome = Steady
	switch {
	case !trend:
		v.Reason = fmt.Sprintf("no significant upward trend (p=%.2g)", mk.P)
	case v.Slope <= 0:
		v.Reason = "Theil–Sen slope is not positive"
	case !grew && rising && v.Rise > v.Allowed:
		v.Outcome = TooNoisy
		v.Reason = fmt.Sprintf("too noisy to decide: trend rose %s but the high-water mark only %s, %s; soak longer",
			num(v.Rise), num(v.Growth), within)
	case !grew:
		v.Reason = fmt.Sprintf("high-water mark rose %s, %s", num(v.Growth), within)
	case !rising:
		v.Reason = fmt.Sprintf("stopped rising (late high %s ≤ middle high %s)", num(v.LateHigh), num(v.MidHigh))
	default:
		v.Outcome, v.Leak = Leaking, true
		v.Reason = fmt.Sprintf("keeps rising: high-water %s → %s (+%s > tolerance %s, %s), p=%.2g",
			num(v.EarlyHigh), num(v.LateHigh), num(v.Growth), num(v.Allowed), v.allowedWhy(p), mk.P)
	}
	return v
}

// tolerance returns the growth allowed to v and where it comes from.
func tolerance(v Verdict, p Params) (float64, string) {
	if p.Fixed {
		if p.Kind == Memory {
			return max(p.Tolerance*math.Abs(v.EarlyHigh), p.Floor), "fixed"
		}
		return p.Tolerance, "fixed"
	}
	if t := p.NoiseFactor * v.Noise; t > p.Floor {
		return t, "noise"
	}
	return p.Floor, "floor"
}

// allowedWhy explains Allowed in a few words.
func (v Verdict) allowedWhy(p Params) string {
	switch v.AllowedFrom {
	case "noise":
		return fmt.Sprintf("%g × noise %s", p.NoiseFactor, format(v.Noise, p.Kind))
	case "floor":
		return fmt.Sprintf("floor; noise %s", format(v.Noise, p.Kind))
	default:
		return "fixed by --tolerance"
	}
}

// ThirdsNoise returns the noise of a series: the largest, over its first,
// middle and last thirds, of the peak-to-peak spread of that third's
// samples around its own Theil–Sen line. Detrending each third on its own
// keeps a leak that starts late (flat, then rising) from passing its bend
// off as noise, as one line through the whole series would; a sawtooth, a
// burst or random noise still shows its full height in the third it falls
// in. Each third is thinned to maxPoints/3 points for the slope.
func ThirdsNoise(ts, xs []float64, maxPoints int) float64 {
	n := min(len(ts), len(xs))
	third := n / 3
	if third < 2 {
		slope, _ := TheilSen(ts[:n], xs[:n])
		return Noise(ts[:n], xs[:n], slope)
	}
	var noise float64
	for _, b := range [][2]int{{0, third}, {third, n - third}, {n - third, n}} {
		pt, px := ts[b[0]:b[1]], xs[b[0]:b[1]]
		tt, tx := Thin(pt, px, max(maxPoints/3, 2))
		slope, _ := TheilSen(tt, tx)
		noise = max(noise, Noise(pt, px, slope))
	}
	return noise
}

// Noise returns the peak-to-peak spread of xs once the trend of the given
// slope is taken out: max(x − slope·t) − min(x − slope·t). It is the noise a
// series shows by itself; a leak's own steps add at most one step to it.
func Noise(ts, xs []float64, slope float64) float64 {
	n := min(len(ts), len(xs))
	if n == 0 {
		return 0
	}
	lo, hi := math.Inf(1), math.Inf(-1)
	for i := range n {
		r := xs[i] - slope*ts[i]
		lo, hi = min(lo, r), max(hi, r)
	}
	return hi - lo
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

// Format formats a value compactly for its kind: memory in binary units,
// whole counts as integers, others with three significant digits.
func Format(f float64, k Kind) string { return format(f, k) }

func format(f float64, k Kind) string {
	if k == Memory {
		return HumanBytes(f)
	}
	if f == math.Trunc(f) && math.Abs(f) < 1e15 {
		return fmt.Sprintf("%.0f", f)
	}
	return fmt.Sprintf("%.3g", f)
}
