package power

import (
	"fmt"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/sqlworker/worker/soak/internal/standin"
)

// Length is one soak length of the sweep with its warm-up.
type Length struct {
	Name             string
	Duration, Warmup time.Duration
	// Rates are the leak rates tried at this length, per hour: the ones
	// near its limit of detection.
	Rates []float64
}

// Lengths are the soaks the repository runs: CI's short soak, make soak
// and the nightly one.
var Lengths = []Length{
	{"60 s (15 s warm-up)", 60 * time.Second, 15 * time.Second,
		[]float64{240, 360, 480, 600, 720, 1080, 1440, 2160, 3600, 7200, 14400, 36000}},
	{"10 m (30 s warm-up)", 10 * time.Minute, 30 * time.Second,
		[]float64{12, 18, 24, 36, 48, 60, 90, 120, 180, 240, 360, 720, 1440}},
	{"30 m (30 s warm-up)", 30 * time.Minute, 30 * time.Second,
		[]float64{4, 6, 8, 12, 16, 24, 36, 48, 72, 120, 240}},
}

// Noises are the peak-to-peak noise amplitudes of the count series.
var Noises = []float64{0, 1, 2, 4, 8, 16}

// leakSeries are the count series a run's leak rotates through, by seed.
var leakSeries = []string{"process_open_fds", "go_goroutines", "worker_db_connections_open", "worker_db_statements_open"}

// Point is one soak of the stand-in judged by replay.
type Point struct {
	Length   Length
	Params   standin.Params
	FailFast bool
}

// Outcome is what the detector said about one Point.
type Outcome struct {
	Point
	Caught    bool    // the leaking series was named
	Undecided bool    // the leaking series was too noisy or too short to decide
	Alarms    int     // clean series named (false alarms)
	Clean     int     // clean series judged
	Unsure    int     // clean series too noisy or too short to decide
	At        float64 // seconds after warm-up of the verdict
	Rise      float64 // how much the leak rose over the judged window
	Noise     float64 // the noise the detector measured on the leaking series
}

// replay soaks the stand-in of p by sampling it at the soak's interval and
// judging the samples through runner.Soak.Replay, the code path of a real soak.
func replay(p Point) (Outcome, error) {
	models := standin.Models(p.Params)
	res, err := standin.Replay(models, p.Length.Duration, p.Length.Warmup, p.FailFast)
	if err != nil {
		return Outcome{}, err
	}
	n := int(p.Length.Duration / time.Second)
	o := Outcome{Point: p, At: res.Elapsed.Seconds() - p.Length.Warmup.Seconds()}
	if res.StoppedEarly {
		o.At = res.StoppedAt - p.Length.Warmup.Seconds()
	}
	warm := p.Length.Warmup.Seconds()
	for _, m := range models {
		if m.Name == p.Params.LeakSeries && p.Params.Leak > 0 {
			o.Rise = leakRise(m, warm, float64(n-1))
		}
	}
	for key, v := range res.Verdicts {
		name := res.Recording.Get(key).Name
		switch {
		case name == p.Params.LeakSeries && p.Params.Leak > 0:
			o.Caught = v.Leak
			o.Undecided = !v.Outcome.Decided()
			o.Noise = v.Noise
		case name == "worker_db_handles_open":
			// The invariant's series, not a leak target of the sweep.
		default:
			o.Clean++
			if v.Leak {
				o.Alarms++
			}
			if !v.Outcome.Decided() {
				o.Unsure++
			}
		}
	}
	if p.Params.LeakSeries == "worker_db_handles_open" && len(res.Broken()) > 0 {
		o.Caught = true
	}
	return o, nil
}

// leakRise returns the rise of m's leak alone between t0 and t1.
func leakRise(m standin.Model, t0, t1 float64) float64 {
	q := m
	q.Noise, q.Shape = 0, standin.Uniform
	return q.Value(t1) - q.Value(t0)
}

// runAll replays every point on all cores and returns the outcomes in order.
func runAll(points []Point) ([]Outcome, error) {
	out := make([]Outcome, len(points))
	errs := make([]error, len(points))
	var wg sync.WaitGroup
	next := make(chan int)
	for range max(runtime.GOMAXPROCS(0), 1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				out[i], errs[i] = replay(points[i])
			}
		}()
	}
	for i := range points {
		next <- i
	}
	close(next)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("point %d: %w", i, err)
		}
	}
	return out, nil
}

// powerPoints returns the leaking soaks of the sweep: every length, noise
// and rate, seeds times each, the leak rotating through the count series.
func powerPoints(seeds int) []Point {
	var ps []Point
	for _, l := range Lengths {
		for _, nz := range Noises {
			for _, r := range l.Rates {
				for s := range seeds {
					ps = append(ps, Point{Length: l, Params: standin.Params{
						Profile: standin.GoService, LeakSeries: leakSeries[s%len(leakSeries)],
						Leak: r / 3600, Noise: nz, Shape: standin.Uniform, Period: 20, MemNoise: 2 << 20,
						Seed: uint64(s)*7919 + uint64(nz)*31 + uint64(r),
					}})
				}
			}
		}
	}
	return ps
}

// cleanShape is a healthy variation tried for false alarms.
type cleanShape struct {
	Shape  standin.Shape
	Noises []float64
	Period float64
}

var cleanShapes = []cleanShape{
	{standin.Uniform, []float64{0, 1, 2, 4, 8, 16}, 20},
	{standin.Sawtooth, []float64{2, 8, 16}, 12},
	{standin.Sawtooth, []float64{8}, 40},
	{standin.Bursts, []float64{2, 8, 16}, 15},
	{standin.Walk, []float64{4, 16}, 20},
	{standin.WarmupGrowth, []float64{8}, 20},
	{standin.GC, []float64{8}, 7},
}

// cleanPoints returns the soaks of the sweep in which nothing leaks.
func cleanPoints(seeds []int) []Point {
	var ps []Point
	for li, l := range Lengths {
		for _, cs := range cleanShapes {
			for _, nz := range cs.Noises {
				for s := range seeds[li] {
					ps = append(ps, Point{Length: l, Params: standin.Params{
						Profile: standin.GoService, Noise: nz, Shape: cs.Shape, Period: cs.Period,
						MemNoise: 2 << 20, Seed: uint64(s)*104729 + uint64(nz)*17 + uint64(cs.Shape)*3 + uint64(cs.Period),
					}})
				}
			}
		}
	}
	return ps
}

// failFastPoints returns the soaks that measure the time to a verdict
// under --fail-fast.
func failFastPoints(seeds int) []Point {
	var ps []Point
	for _, l := range Lengths[:2] {
		for _, nz := range []float64{0, 2, 8} {
			for _, r := range []float64{36000, 7200, 3600, 1440, 720} {
				for s := range seeds {
					ps = append(ps, Point{Length: l, FailFast: true, Params: standin.Params{
						Profile: standin.GoService, LeakSeries: leakSeries[s%len(leakSeries)],
						Leak: r / 3600, Noise: nz, Shape: standin.Uniform, Period: 20, MemNoise: 2 << 20,
						Seed: uint64(s)*6151 + uint64(nz)*13 + uint64(r),
					}})
				}
			}
		}
	}
	return ps
}

// median returns the median of xs, or 0 when empty.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
