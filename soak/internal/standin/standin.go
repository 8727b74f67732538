// Package standin is a service that leaks at a chosen rate under noise of
// a chosen amplitude and shape, for measuring what the soak detector can
// and cannot see. Its series are pure functions of time and a seed, so the
// same soak can be served over HTTP to bin/soak in real time (soak/cmd/standin)
// or sampled directly at the soak's scrape interval and replayed through
// the runner (the power study, soak/internal/power).
package standin

import (
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Shape is the kind of healthy variation a series shows on top of its
// level.
type Shape int

const (
	// Uniform is random integer noise in [0, Noise], redrawn every second.
	Uniform Shape = iota
	// Sawtooth ramps up by Noise over Period seconds and drops back: idle
	// connections closing and reopening.
	Sawtooth
	// Bursts jumps by Noise for 2 s at random moments, about once every
	// Period seconds, and closes again.
	Bursts
	// Walk is a random walk pulled back to its level (AR(1), φ = 0.9) with
	// steps in ±Noise/4: autocorrelated noise.
	Walk
	// WarmupGrowth grows by Noise during the first 10 s (a pool filling,
	// caches warming), then sits still with a unit of noise.
	WarmupGrowth
	// GC is a garbage collector's heap: it ramps up by Noise over Period
	// seconds and is collected back, with small jitter.
	GC
)

// Shapes lists every Shape in order.
var Shapes = []Shape{Uniform, Sawtooth, Bursts, Walk, WarmupGrowth, GC}

// String returns the name of the shape, as the flags take it.
func (s Shape) String() string {
	switch s {
	case Sawtooth:
		return "sawtooth"
	case Bursts:
		return "bursts"
	case Walk:
		return "walk"
	case WarmupGrowth:
		return "warmup-growth"
	case GC:
		return "gc"
	default:
		return "uniform"
	}
}

// ParseShape returns the Shape named s.
func ParseShape(s string) (Shape, error) {
	for _, sh := range Shapes {
		if sh.String() == s {
			return sh, nil
		}
	}
	return 0, fmt.Errorf("unknown shape %q", s)
}

// Model is one series of the stand-in.
type Model struct {
	Name   string  // metric name
	Base   float64 // level at t=0
	Memory bool    // bytes: the leak grows smoothly instead of in steps
	// Leak is the leak rate in units per second, from LeakFrom seconds on.
	// For counts the series rises by whole steps; Phase (in [0, 1)) is where
	// in its first step the leak starts.
	Leak     float64
	LeakFrom float64
	Phase    float64
	Noise    float64 // peak-to-peak amplitude of the healthy variation
	Shape    Shape
	Period   float64 // of Sawtooth, Bursts and GC, in seconds
	Seed     uint64
	// Counter makes the series a counter rising by Rate per second, each
	// second's increment jittered by ±Jitter of it and the total rounded
	// down to whole Quantum (process_cpu_seconds_total counts clock ticks
	// of 10 ms). Level, leak and noise do not apply.
	Counter bool
	Rate    float64
	Jitter  float64
	Quantum float64
}

// Value returns the series at t seconds.
func (m Model) Value(t float64) float64 {
	if m.Counter {
		return m.counter(t)
	}
	v := m.Base + m.noise(t)
	if m.Leak > 0 && t >= m.LeakFrom {
		grown := m.Leak*(t-m.LeakFrom) + m.Phase
		if !m.Memory {
			grown = math.Floor(grown)
		}
		v += grown
	}
	return math.Max(v, 0)
}

// noise returns the healthy variation at t.
func (m Model) noise(t float64) float64 {
	a := m.Noise
	if a <= 0 && m.Shape != WarmupGrowth {
		return 0
	}
	period := m.Period
	if period <= 0 {
		period = 20
	}
	sec := int(math.Floor(t))
	switch m.Shape {
	case Sawtooth:
		x := math.Mod(t+period*unit(m.Seed, -1), period) / period
		return math.Floor(x * (a + 1))
	case Bursts:
		// One burst per period-long slot, at a random second in it.
		slot := int(math.Floor(t / period))
		at := float64(slot)*period + math.Floor(unit(m.Seed, -2-slot)*(period-2))
		if t >= at && t < at+2 {
			return a
		}
		return 0
	case Walk:
		// AR(1) over whole seconds: x[k] = 0.9 x[k-1] + e[k], summed
		// over the last 60 s (0.9^60 < 0.002).
		var x float64
		for k := max(sec-60, 0); k <= sec; k++ {
			x = 0.9*x + (unit(m.Seed, k)-0.5)*a/2
		}
		return math.Round(x)
	case WarmupGrowth:
		grow := math.Max(a, 1) * math.Min(t, 10) / 10
		return math.Floor(grow) + math.Floor(unit(m.Seed, sec)*2)
	case GC:
		x := math.Mod(t+period*unit(m.Seed, -1), period) / period
		return x*a + 0.02*a*unit(m.Seed, sec)
	default:
		v := math.Floor(unit(m.Seed, sec) * (a + 1))
		if m.Memory {
			v = unit(m.Seed, sec) * a
		}
		return v
	}
}

// counter returns the counter's value at t: the jittered increments of
// every whole second before t and the share of the current one.
func (m Model) counter(t float64) float64 {
	if t <= 0 {
		return 0
	}
	var v float64
	sec := int(math.Floor(t))
	for k := 0; k <= sec; k++ {
		inc := m.Rate * (1 + m.Jitter*(2*unit(m.Seed, k)-1))
		if k == sec {
			inc *= t - float64(sec)
		}
		v += inc
	}
	if m.Quantum > 0 {
		v = math.Floor(v/m.Quantum) * m.Quantum
	}
	return v
}

// unit returns a deterministic number in [0, 1) for (seed, i): noise that
// depends only on the second it is drawn for, whoever asks and when.
func unit(seed uint64, i int) float64 {
	x := seed*0x9e3779b97f4a7c15 + uint64(int64(i))*0xbf58476d1ce4e5b9 + 0x632be59bd9b4e019
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return float64(x>>11) / (1 << 53)
}

// Profile is a set of series a kind of service exposes.
type Profile int

const (
	// GoService exposes what a Go service with the worker's driver metrics
	// does: FDs, goroutines, connections, statements, handles and memory.
	GoService Profile = iota
	// ProcessOnly exposes only the standard process metrics, as a service
	// instrumented with prom-client or the Python client does.
	ProcessOnly
)

// String returns "go" or "process".
func (p Profile) String() string {
	if p == ProcessOnly {
		return "process"
	}
	return "go"
}

// ParseProfile returns the Profile named s.
func ParseProfile(s string) (Profile, error) {
	switch s {
	case "go":
		return GoService, nil
	case "process":
		return ProcessOnly, nil
	}
	return 0, fmt.Errorf("unknown profile %q (want go or process)", s)
}

// Count series of the GoService profile that can leak, with their levels.
var countLevels = []struct {
	Name string
	Base float64
}{
	{"process_open_fds", 20},
	{"go_goroutines", 11},
	{"worker_db_connections_open", 4},
	{"worker_db_statements_open", 0},
}

// Params describe one stand-in service.
type Params struct {
	Profile Profile
	// LeakSeries is the name of the series that leaks, at Leak units per
	// second (bytes per second for memory) from LeakFrom seconds on.
	LeakSeries string
	Leak       float64
	LeakFrom   float64
	// Noise and Shape are the healthy variation of every count series;
	// memory series swing like a GC heap by MemNoise bytes.
	Noise    float64
	Shape    Shape
	Period   float64
	MemNoise float64
	Seed     uint64
	// StepSeries holds Step more than its level all along: a build that
	// keeps k more FDs or connections at steady state than its baseline.
	StepSeries string
	Step       float64
	// CPUPerRun is the CPU seconds a job run costs, RunsPerSecond how many
	// run (7 when zero, as in the soak config) and CPUJitter the relative
	// spread of each second's CPU; zero CPUPerRun exposes neither counter.
	CPUPerRun     float64
	RunsPerSecond float64
	CPUJitter     float64
}

// Models returns the series of a stand-in with params p.
func Models(p Params) []Model {
	var out []Model
	add := func(name string, base float64, memory bool, noise float64, shape Shape, salt uint64) {
		m := Model{Name: name, Base: base, Memory: memory, Noise: noise, Shape: shape, Period: p.Period,
			Seed: p.Seed*131 + salt}
		if name == p.LeakSeries {
			m.Leak, m.LeakFrom = p.Leak, p.LeakFrom
			m.Phase = unit(p.Seed, 1<<20)
		}
		if name == p.StepSeries {
			m.Base += p.Step
		}
		out = append(out, m)
	}
	if p.CPUPerRun > 0 {
		runs := p.RunsPerSecond
		if runs <= 0 {
			runs = 7
		}
		out = append(out,
			Model{Name: "process_cpu_seconds_total", Counter: true, Rate: runs * p.CPUPerRun, Jitter: p.CPUJitter,
				Quantum: 0.01, Seed: p.Seed*131 + 11},
			Model{Name: "worker_job_runs_total", Counter: true, Rate: runs, Quantum: 1, Seed: p.Seed*131 + 12})
	}
	memShape := GC
	add("process_open_fds", 20, false, p.Noise, p.Shape, 1)
	add("process_resident_memory_bytes", 60<<20, true, p.MemNoise, memShape, 2)
	if p.Profile == ProcessOnly {
		return out
	}
	for i, c := range countLevels[1:] {
		add(c.Name, c.Base, false, p.Noise, p.Shape, uint64(3+i))
	}
	add("go_memstats_heap_inuse_bytes", 4<<20, true, p.MemNoise, memShape, 9)
	if p.LeakSeries == "worker_db_handles_open" {
		add("worker_db_handles_open", 1, false, 0, Uniform, 10)
	}
	return out
}

// Render writes the exposition of models at t seconds.
func Render(w io.Writer, models []Model, t float64) {
	for _, m := range models {
		typ := "gauge"
		if m.Counter {
			typ = "counter"
		}
		fmt.Fprintf(w, "# TYPE %s %s\n%s %s\n", m.Name, typ, m.Name, formatFloat(m.Value(t)))
	}
}

// Exposition returns Render's output as a string.
func Exposition(models []Model, t float64) string {
	var b strings.Builder
	Render(&b, models, t)
	return b.String()
}

func formatFloat(f float64) string {
	if f == math.Trunc(f) && math.Abs(f) < 1e15 {
		return fmt.Sprintf("%.0f", f)
	}
	return fmt.Sprintf("%g", f)
}

// Server serves the stand-in's /metrics in real time, its clock running
// Speed times faster than the wall clock (1 when zero), so that a long
// soak can be served in a fraction of its duration.
type Server struct {
	Models []Model
	Speed  float64

	once  sync.Once
	start time.Time
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	s.once.Do(func() {
		if s.start.IsZero() {
			s.start = time.Now()
		}
	})
	speed := s.Speed
	if speed <= 0 {
		speed = 1
	}
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	Render(w, s.Models, time.Since(s.start).Seconds()*speed)
}

// Started sets the time the stand-in's clock counts from; by default the
// first scrape.
func (s *Server) Started(t time.Time) { s.start = t }
