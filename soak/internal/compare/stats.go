package compare

import (
	"math"
	"slices"
)

// MannWhitney is the result of a Mann–Whitney U test of y against x.
type MannWhitney struct {
	U     float64 // pairs (x, y) with y > x, ties counting one half
	Z     float64 // continuity-corrected standard score of U
	PHigh float64 // one-sided p-value that y tends to be higher than x
	PLow  float64 // one-sided p-value that y tends to be lower than x
}

// MannWhitneyTest compares y with x by the ranks of their values, with
// the normal approximation and its variance corrected for ties: block means
// of a quiet count series are often all equal. With no spread at all both
// p-values are 1 unless every y differs from every x the same way.
func MannWhitneyTest(x, y []float64) MannWhitney {
	n1, n2 := float64(len(x)), float64(len(y))
	if n1 == 0 || n2 == 0 {
		return MannWhitney{PHigh: 1, PLow: 1}
	}
	var u float64
	for _, yi := range y {
		for _, xi := range x {
			switch {
			case yi > xi:
				u++
			case yi == xi:
				u += 0.5
			}
		}
	}
	all := slices.Concat(x, y)
	slices.Sort(all)
	n := n1 + n2
	var ties float64
	for i := 0; i < len(all); {
		j := i + 1
		for j < len(all) && all[j] == all[i] {
			j++
		}
		t := float64(j - i)
		ties += t*t*t - t
		i = j
	}
	v := n1 * n2 / 12 * ((n + 1) - ties/(n*(n-1)))
	mw := MannWhitney{U: u, PHigh: 1, PLow: 1}
	mean := n1 * n2 / 2
	if v <= 0 {
		// Every value equal: nothing tells the samples apart.
		return mw
	}
	sd := math.Sqrt(v)
	mw.Z = (u - mean) / sd
	mw.PHigh = 0.5 * math.Erfc((u-mean-0.5)/sd/math.Sqrt2)
	mw.PLow = 0.5 * math.Erfc((mean-u-0.5)/sd/math.Sqrt2)
	return mw
}

// HodgesLehmann returns the Hodges–Lehmann estimate of the shift of y
// against x (the median of all differences y_j − x_i) and its
// distribution-free confidence interval at the given level (0.95): the
// order statistics of the differences that the Mann–Whitney distribution
// puts at its tails (Moses; Hollander & Wolfe), by the normal
// approximation. It is the interval that goes with the rank test: it
// excludes 0 about when the test is significant at 1 − level, two-sided.
func HodgesLehmann(x, y []float64, level float64) (shift, lo, hi float64) {
	if len(x) == 0 || len(y) == 0 {
		return math.NaN(), math.NaN(), math.NaN()
	}
	d := make([]float64, 0, len(x)*len(y))
	for _, yi := range y {
		for _, xi := range x {
			d = append(d, yi-xi)
		}
	}
	slices.Sort(d)
	m := len(d)
	if m%2 == 1 {
		shift = d[m/2]
	} else {
		shift = (d[m/2-1] + d[m/2]) / 2
	}
	n1, n2 := float64(len(x)), float64(len(y))
	z := normalQuantile(1 - (1-level)/2)
	k := int(math.Floor(n1*n2/2 - z*math.Sqrt(n1*n2*(n1+n2+1)/12)))
	k = min(max(k, 0), m-1) // k-th smallest (0-based); too few pairs: the extremes
	return shift, d[k], d[m-1-k]
}

// normalQuantile returns the p-quantile of the standard normal
// distribution, by bisection on Erfc: only a handful of levels are asked.
func normalQuantile(p float64) float64 {
	lo, hi := -10.0, 10.0
	for range 100 {
		mid := (lo + hi) / 2
		if 0.5*math.Erfc(-mid/math.Sqrt2) < p {
			lo = mid
		} else {
			hi = mid
		}
	}
	return (lo + hi) / 2
}

// median returns the median of xs, or NaN when empty.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
