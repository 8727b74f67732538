package compare

import (
	"math"
	"testing"
)

func near(a, b, tol float64) bool { return math.Abs(a-b) <= tol }

// Ensure the rank test and the shift agree with the textbook values
// (continuity-corrected normal approximation, as R's wilcox.test with
// exact = FALSE).
func TestMannWhitneyTest(t *testing.T) {
	for _, tc := range []struct {
		name        string
		x, y        []float64
		u, pHigh    float64
		shift, l, h float64
	}{
		// U = 9 of 9 pairs; z = (9 − 4.5 − 0.5) / √5.25 = 1.7457.
		{"separated", []float64{1, 2, 3}, []float64{4, 5, 6}, 9, 0.04043, 3, 1, 5},
		// Two groups of 9 ties: variance 81/12 × (19 − 1440/306).
		{"tied steps", rep(4, 9), rep(6, 9), 81, 2.33e-5, 2, 2, 2},
		{"all equal", rep(4, 9), rep(4, 9), 40.5, 1, 0, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mw := MannWhitneyTest(tc.x, tc.y)
			if mw.U != tc.u {
				t.Errorf("got U %g, want %g", mw.U, tc.u)
			}
			if !near(mw.PHigh, tc.pHigh, tc.pHigh*0.01) {
				t.Errorf("got p(higher) %.4g, want %.4g", mw.PHigh, tc.pHigh)
			}
			shift, lo, hi := HodgesLehmann(tc.x, tc.y, 0.95)
			if shift != tc.shift || lo != tc.l || hi != tc.h {
				t.Errorf("got shift %g [%g, %g], want %g [%g, %g]", shift, lo, hi, tc.shift, tc.l, tc.h)
			}
		})
	}
}

// Ensure the interval narrows to the order statistics the normal
// approximation names: 12 against 12 with a shift of 10 and unit spacing.
func TestHodgesLehmann_Interval(t *testing.T) {
	var x, y []float64
	for i := range 12 {
		x, y = append(x, float64(i)), append(y, float64(i)+10)
	}
	shift, lo, hi := HodgesLehmann(x, y, 0.95)
	// k = ⌊72 − 1.96 √300⌋ = 38: the 39th smallest of the 144 differences
	// 10 + (j − i), of which 36 are below 7 and 45 below 8.
	if shift != 10 || lo != 7 || hi != 13 {
		t.Errorf("got %g [%g, %g], want 10 [7, 13]", shift, lo, hi)
	}
	if q := normalQuantile(0.975); !near(q, 1.95996, 1e-4) {
		t.Errorf("got z(0.975) = %g, want 1.95996", q)
	}
}

func rep(v float64, n int) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = v
	}
	return out
}
