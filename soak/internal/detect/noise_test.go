package detect_test

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/sqlworker/worker/soak/internal/detect"
)

// Ensure autocorrelated noise, which fools a bare Mann–Kendall test (it
// assumes independent samples), is not judged a leak: 100 series of AR(1)
// noise with φ=0.9 (a count wandering ±5 around its mean with a memory of
// about ten samples), none of them may leak.
func TestAnalyze_AutocorrelatedNoise(t *testing.T) {
	const runs = 100
	trends := 0
	for seed := range runs {
		r := rand.New(rand.NewPCG(uint64(seed), 7))
		x := 0.0
		ts, xs := make([]float64, 0, 600), make([]float64, 0, 600)
		for i := range 600 {
			x = 0.9*x + float64(r.IntN(5)-2)
			ts = append(ts, float64(i))
			xs = append(xs, 20+math.Round(x))
		}
		v := detect.Analyze(ts, xs, detect.Params{Kind: detect.Count})
		if v.Leak {
			t.Fatalf("seed %d: judged a leak (%s), want steady", seed, v.Reason)
		}
		if v.P < detect.DefaultAlpha {
			trends++
		}
	}
	// Mann–Kendall alone would have cried wolf on some of these.
	t.Logf("%d of %d series had a significant Mann–Kendall trend; none leaked", trends, runs)
}
