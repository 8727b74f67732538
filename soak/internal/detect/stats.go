package detect

import (
	"math"
	"slices"
)

// MannKendall is the result of a Mann–Kendall trend test.
type MannKendall struct {
	S   float64 // sum of sign(x[j]-x[i]) over all pairs i<j
	Var float64 // variance of S under H0, corrected for ties
	Z   float64 // continuity-corrected standard score of S
	P   float64 // one-sided p-value for an upward trend
}

// MannKendallTest runs the Mann–Kendall test on xs, taken in order, and
// returns the one-sided p-value for an upward trend. The variance of S is
// corrected for tied groups, which matter here: gauges of counts sit on the
// same integer for long stretches. It costs O(n²) comparisons and
// O(n log n) for the tie groups.
func MannKendallTest(xs []float64) MannKendall {
	n := len(xs)
	if n < 2 {
		return MannKendall{P: 1}
	}
	var s float64
	for i := 0; i < n-1; i++ {
		xi := xs[i]
		for _, xj := range xs[i+1:] {
			switch {
			case xj > xi:
				s++
			case xj < xi:
				s--
			}
		}
	}

	// Tie correction: subtract Σ t(t-1)(2t+5) over groups of equal values.
	sorted := slices.Clone(xs)
	slices.Sort(sorted)
	var ties float64
	for i := 0; i < n; {
		j := i + 1
		for j < n && sorted[j] == sorted[i] {
			j++
		}
		if t := float64(j - i); t > 1 {
			ties += t * (t - 1) * (2*t + 5)
		}
		i = j
	}
	fn := float64(n)
	v := (fn*(fn-1)*(2*fn+5) - ties) / 18

	mk := MannKendall{S: s, Var: v, P: 1}
	if v <= 0 {
		// Every value is equal: no trend at all.
		return mk
	}
	switch {
	case s > 0:
		mk.Z = (s - 1) / math.Sqrt(v)
	case s < 0:
		mk.Z = (s + 1) / math.Sqrt(v)
	}
	mk.P = 0.5 * math.Erfc(mk.Z/math.Sqrt2)
	return mk
}

// TheilSen returns the Theil–Sen estimate of the line through (ts, xs): the
// median of the slopes between all pairs of points with distinct ts, and the
// median of the residual intercepts. It shrugs off up to ~29% outliers,
// which is why a single spike cannot tilt it. It costs O(n²) memory and
// time; callers thin long series first (see Thin).
func TheilSen(ts, xs []float64) (slope, intercept float64) {
	n := min(len(ts), len(xs))
	if n < 2 {
		if n == 1 {
			return 0, xs[0]
		}
		return 0, 0
	}
	slopes := make([]float64, 0, n*(n-1)/2)
	for i := 0; i < n-1; i++ {
		for j := i + 1; j < n; j++ {
			if dt := ts[j] - ts[i]; dt != 0 {
				slopes = append(slopes, (xs[j]-xs[i])/dt)
			}
		}
	}
	if len(slopes) == 0 {
		return 0, median(slices.Clone(xs[:n]))
	}
	slope = median(slopes)
	res := make([]float64, n)
	for i := range n {
		res[i] = xs[i] - slope*ts[i]
	}
	return slope, median(res)
}

// median returns the median of xs, reordering xs in place.
func median(xs []float64) float64 {
	n := len(xs)
	if n == 0 {
		return math.NaN()
	}
	k := n / 2
	hi := quickselect(xs, k)
	if n%2 == 1 {
		return hi
	}
	// After quickselect every element left of k is <= xs[k].
	return (slices.Max(xs[:k]) + hi) / 2
}

// quickselect puts the k-th smallest element of xs at xs[k] and returns it,
// with smaller or equal elements before it. Expected O(n).
func quickselect(xs []float64, k int) float64 {
	lo, hi := 0, len(xs)-1
	for lo < hi {
		// Median of three keeps sorted and staircase input from going
		// quadratic.
		mid := lo + (hi-lo)/2
		if xs[mid] < xs[lo] {
			xs[mid], xs[lo] = xs[lo], xs[mid]
		}
		if xs[hi] < xs[lo] {
			xs[hi], xs[lo] = xs[lo], xs[hi]
		}
		if xs[hi] < xs[mid] {
			xs[hi], xs[mid] = xs[mid], xs[hi]
		}
		pivot := xs[mid]
		// Three-way partition so that runs of equal values (ties are the
		// norm in count gauges) do not degrade to O(n²).
		lt, i, gt := lo, lo, hi
		for i <= gt {
			switch {
			case xs[i] < pivot:
				xs[lt], xs[i] = xs[i], xs[lt]
				lt++
				i++
			case xs[i] > pivot:
				xs[i], xs[gt] = xs[gt], xs[i]
				gt--
			default:
				i++
			}
		}
		switch {
		case k < lt:
			hi = lt - 1
		case k > gt:
			lo = gt + 1
		default:
			return xs[k]
		}
	}
	return xs[k]
}

// Thin returns at most max points of (ts, xs), evenly spaced by index and
// always keeping the last point, so that the O(n²) statistics stay cheap on
// long soaks. It returns the inputs unchanged when they are short enough.
func Thin(ts, xs []float64, max int) ([]float64, []float64) {
	n := len(xs)
	if max < 2 || n <= max {
		return ts, xs
	}
	ot := make([]float64, 0, max)
	ox := make([]float64, 0, max)
	for i := range max {
		j := i * (n - 1) / (max - 1)
		ot = append(ot, ts[j])
		ox = append(ox, xs[j])
	}
	return ot, ox
}
