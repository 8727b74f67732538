package detect_test

import (
	"math"
	"math/rand/v2"
	"testing"

	"go.uber.org/goleak"

	"github.com/sqlworker/worker/soak/internal/detect"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	warmup  = 30  // seconds of warm-up in the synthetic soaks
	samples = 630 // a 10m30s soak at 1 s
)

// sampled builds a soak of samples at 1 s intervals from f and returns the
// post-warm-up part, as the harness hands it to Analyze.
func sampled(f func(i int) float64) (ts, xs []float64) {
	for i := range samples {
		if i < warmup {
			continue
		}
		ts = append(ts, float64(i))
		xs = append(xs, f(i))
	}
	return ts, xs
}

// noise returns a deterministic source of integer noise in [-k, k].
func noise(seed uint64, k int) func() float64 {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	return func() float64 { return float64(r.IntN(2*k+1) - k) }
}

var countParams = detect.Params{Kind: detect.Count}

// Ensure each synthetic shape gets the verdict a person would give it.
func TestAnalyze_Shapes(t *testing.T) {
	n1, n2, n3 := noise(1, 3), noise(2, 2), noise(3, 2)
	mem := noise(4, 1)
	for _, tc := range []struct {
		name   string
		f      func(i int) float64
		params detect.Params
		leak   bool
	}{
		{"Flat", func(int) float64 { return 12 }, countParams, false},
		{"FlatWithNoise", func(int) float64 { return 20 + n1() }, countParams, false},
		{"Sawtooth", func(i int) float64 { return 2 + float64(i%20)/3 }, countParams, false},
		{"SlowSawtooth", func(i int) float64 { return 2 + float64(i%250)/25 }, countParams, false},
		{"StepDuringWarmupThenFlat", func(i int) float64 {
			if i < 10 {
				return 5
			}
			return 15
		}, countParams, false},
		{"PoolFillsAfterWarmup", func(i int) float64 {
			// One connection, then the pool fills to its limit of 4.
			if i < 300 {
				return 1
			}
			return 4
		}, countParams, false},
		{"BigStepThenFlat", func(i int) float64 {
			// Grew by more than the tolerance once, mid-run, and stopped.
			if i < 300 {
				return 10
			}
			return 30
		}, countParams, false},
		{"SlowLinearLeak", func(i int) float64 { return 10 + float64(i/10) }, countParams, true},
		{"SlowLinearLeakWithNoise", func(i int) float64 { return 10 + float64(i/10) + n2() }, countParams, true},
		{"LeakStartsLate", func(i int) float64 {
			if i < 450 {
				return 10 + n3()
			}
			return 10 + float64(i-450)/4 + n3()
		}, countParams, true},
		{"SingleSpike", func(i int) float64 {
			if i == 600 {
				return 60
			}
			return 10
		}, countParams, false},
		{"SpikeOnNoise", func(i int) float64 {
			if i == 610 {
				return 80
			}
			return 20 + n1()
		}, countParams, false},
		{"MemoryGCSawtooth", func(i int) float64 {
			return 8<<20 + float64(i%37)*(64<<10) + 4096*mem()
		}, detect.Params{Kind: detect.Memory, Floor: 2 << 20}, false},
		{"MemoryLeak", func(i int) float64 {
			return 8<<20 + float64(i)*(16<<10) + float64(i%37)*(64<<10)
		}, detect.Params{Kind: detect.Memory, Floor: 2 << 20}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts, xs := sampled(tc.f)
			v := detect.Analyze(ts, xs, tc.params)
			if got, want := v.Leak, tc.leak; got != want {
				t.Fatalf("Leak=%v, want %v (%s; slope %.3g/h, p=%.3g, growth %g, allowed %g)",
					got, want, v.Reason, v.SlopePerHour(), v.P, v.Growth, v.Allowed)
			}
			t.Logf("%s (slope %.3g/h)", v.Reason, v.SlopePerHour())
			if v.Reason == "" {
				t.Fatal("got an empty Reason, want one")
			}
		})
	}
}

// Ensure the slow leak's slope is estimated close to its true rate.
func TestAnalyze_SlopePerHour(t *testing.T) {
	ts, xs := sampled(func(i int) float64 { return 10 + float64(i/10) })
	v := detect.Analyze(ts, xs, countParams)
	if got, want := v.SlopePerHour(), 360.0; math.Abs(got-want) > 10 {
		t.Fatalf("SlopePerHour()=%.1f, want %.0f±10", got, want)
	}
}

// failFast are the parameters the harness uses under --fail-fast.
func failFast() detect.Params {
	p := countParams
	p.Alpha = detect.DefaultFailFastAlpha
	p.MaxPoints = detect.DefaultFailFastMaxPoints
	p.SkipUnlessTrend = true
	return p
}

// Ensure fail-fast parameters, evaluated after every sample as the harness
// does, catch a leak of a few units per second within 30 samples after
// warm-up, and stay quiet on noise for a whole soak.
func TestAnalyze_FailFast(t *testing.T) {
	t.Run("Leak", func(t *testing.T) {
		var ts, xs []float64
		for i := range 30 {
			ts = append(ts, float64(i))
			xs = append(xs, 20+3*float64(i))
			if v := detect.Analyze(ts, xs, failFast()); v.Leak {
				if v.Slope <= 0 {
					t.Fatalf("Slope=%g, want > 0", v.Slope)
				}
				t.Logf("caught after %d samples: %s", len(xs), v.Reason)
				return
			}
		}
		t.Fatal("leak of 3/s not caught in 30 samples, want caught")
	})
	t.Run("Noise", func(t *testing.T) {
		n := noise(9, 3)
		var ts, xs []float64
		for i := range 600 {
			ts = append(ts, float64(i))
			xs = append(xs, 20+n())
			if v := detect.Analyze(ts, xs, failFast()); v.Leak {
				t.Fatalf("noise judged a leak after %d samples (%s), want steady", i+1, v.Reason)
			}
		}
	})
}

// Ensure too short a series is not judged.
func TestAnalyze_TooFew(t *testing.T) {
	v := detect.Analyze([]float64{1, 2, 3}, []float64{1, 2, 3}, countParams)
	if v.Leak {
		t.Fatalf("Leak=true, want false on 3 samples")
	}
}

// Ensure the Mann–Kendall statistics match hand-computed values.
func TestMannKendallTest(t *testing.T) {
	t.Run("Increasing", func(t *testing.T) {
		mk := detect.MannKendallTest([]float64{1, 2, 3, 4, 5})
		if got, want := mk.S, 10.0; got != want {
			t.Fatalf("S=%g, want %g", got, want)
		}
		if got, want := mk.Var, 50.0/3; math.Abs(got-want) > 1e-9 {
			t.Fatalf("Var=%g, want %g", got, want)
		}
		if got, want := mk.P, 0.01372; math.Abs(got-want) > 1e-4 {
			t.Fatalf("P=%g, want %g", got, want)
		}
	})
	t.Run("Ties", func(t *testing.T) {
		mk := detect.MannKendallTest([]float64{1, 1, 2, 2})
		if got, want := mk.S, 4.0; got != want {
			t.Fatalf("S=%g, want %g", got, want)
		}
		// (4·3·13 − 2·(2·1·9)) / 18
		if got, want := mk.Var, 120.0/18; math.Abs(got-want) > 1e-9 {
			t.Fatalf("Var=%g, want %g", got, want)
		}
	})
	t.Run("Constant", func(t *testing.T) {
		mk := detect.MannKendallTest([]float64{3, 3, 3, 3})
		if got, want := mk.P, 1.0; got != want {
			t.Fatalf("P=%g, want %g", got, want)
		}
	})
}

// Ensure Theil–Sen ignores an outlier that would tilt least squares.
func TestTheilSen(t *testing.T) {
	ts := []float64{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}
	xs := make([]float64, len(ts))
	for i, x := range ts {
		xs[i] = 2*x + 1
	}
	xs[9] = 500
	slope, intercept := detect.TheilSen(ts, xs)
	if got, want := slope, 2.0; got != want {
		t.Fatalf("slope=%g, want %g", got, want)
	}
	if got, want := intercept, 1.0; got != want {
		t.Fatalf("intercept=%g, want %g", got, want)
	}
}

// Ensure Thin keeps the ends and the requested count.
func TestThin(t *testing.T) {
	ts := make([]float64, 1800)
	for i := range ts {
		ts[i] = float64(i)
	}
	tt, tx := detect.Thin(ts, ts, 300)
	if got, want := len(tt), 300; got != want {
		t.Fatalf("len=%d, want %d", got, want)
	}
	if got, want := tx[len(tx)-1], 1799.0; got != want {
		t.Fatalf("last=%g, want %g", got, want)
	}
	if got, want := tx[0], 0.0; got != want {
		t.Fatalf("first=%g, want %g", got, want)
	}
}

func benchSeries(n int) (ts, xs []float64) {
	nz := noise(5, 3)
	for i := range n {
		ts = append(ts, float64(i))
		xs = append(xs, 10+float64(i/10)+nz())
	}
	return ts, xs
}

// BenchmarkAnalyze_Final measures the end-of-soak verdict on a 30 min soak
// at 1 s (1770 post-warm-up samples, thinned to DefaultMaxPoints).
func BenchmarkAnalyze_Final(b *testing.B) {
	ts, xs := benchSeries(1770)
	for b.Loop() {
		detect.Analyze(ts, xs, countParams)
	}
}

// BenchmarkAnalyze_FailFast measures one fail-fast evaluation of a series,
// repeated for every watched series at every sample.
func BenchmarkAnalyze_FailFast(b *testing.B) {
	ts, xs := benchSeries(1770)
	p := failFast()
	for b.Loop() {
		detect.Analyze(ts, xs, p)
	}
}

// Ensure HumanBytes picks binary units.
func TestHumanBytes(t *testing.T) {
	for in, want := range map[float64]string{512: "512 B", 2048: "2.0 KiB", 27 << 20: "27.0 MiB"} {
		if got := detect.HumanBytes(in); got != want {
			t.Fatalf("HumanBytes(%g)=%q, want %q", in, got, want)
		}
	}
}
