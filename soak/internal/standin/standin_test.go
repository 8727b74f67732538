package standin_test

import (
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sqlworker/worker/soak/internal/scrape"
	"github.com/sqlworker/worker/soak/internal/standin"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Ensure a count leak rises by whole steps at its rate, from its start.
func TestModel_Leak(t *testing.T) {
	m := standin.Model{Name: "process_open_fds", Base: 20, Leak: 0.2, LeakFrom: 10}
	if got, want := m.Value(9), 20.0; got != want {
		t.Fatalf("before the leak: got %v, want %v", got, want)
	}
	if got, want := m.Value(60)-m.Value(10), 10.0; got != want {
		t.Fatalf("rise over 50 s at 0.2/s: got %v, want %v", got, want)
	}
	if got := m.Value(12.5); got != math.Trunc(got) {
		t.Fatalf("got %v, want a whole count", got)
	}
}

// Ensure every shape stays within its peak-to-peak amplitude (the
// random walk within twice it) and is a function of time alone.
func TestModel_NoiseAmplitude(t *testing.T) {
	for _, sh := range standin.Shapes {
		m := standin.Model{Base: 100, Noise: 8, Shape: sh, Period: 12, Seed: 3}
		lo, hi := math.Inf(1), math.Inf(-1)
		for i := range 600 {
			v := m.Value(float64(i))
			lo, hi = math.Min(lo, v), math.Max(hi, v)
			if again := m.Value(float64(i)); again != v {
				t.Fatalf("%v: Value(%d) gave %v then %v, want the same", sh, i, v, again)
			}
		}
		limit := 8.0
		switch sh {
		case standin.Walk:
			limit = 16
		case standin.WarmupGrowth:
			limit = 9
		}
		if got := hi - lo; got > limit || got == 0 {
			t.Errorf("%v: peak-to-peak %v, want in (0, %v]", sh, got, limit)
		}
	}
}

// Ensure the process profile exposes only the standard process metrics.
func TestModels_Profiles(t *testing.T) {
	var names []string
	for _, m := range standin.Models(standin.Params{Profile: standin.ProcessOnly}) {
		names = append(names, m.Name)
	}
	if got, want := strings.Join(names, ","), "process_open_fds,process_resident_memory_bytes"; got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
	ms := standin.Models(standin.Params{Profile: standin.GoService, LeakSeries: "go_goroutines", Leak: 1})
	for _, m := range ms {
		if got, want := m.Leak > 0, m.Name == "go_goroutines"; got != want {
			t.Fatalf("%s leaks %v, want %v", m.Name, got, want)
		}
	}
}

// Ensure the server's exposition parses and runs on its own clock.
func TestServer(t *testing.T) {
	s := &standin.Server{Speed: 3600, Models: []standin.Model{{Name: "process_open_fds", Base: 5, Leak: 1}}}
	s.Started(time.Now().Add(-time.Second))
	srv := httptest.NewServer(s)
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	vec, err := scrape.Parse(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("got %v, want exposition that parses", err)
	}
	// At least one wall-clock second at 3600× is an hour of leaking.
	if got := float64(vec[0].Value); got < 3605 {
		t.Fatalf("got %v, want at least 3605 after an hour of stand-in time", got)
	}
}

// Ensure shapes are named as the flags take them.
func TestParseShape(t *testing.T) {
	for _, sh := range standin.Shapes {
		got, err := standin.ParseShape(sh.String())
		if err != nil || got != sh {
			t.Fatalf("ParseShape(%q)=%v, %v; want %v", sh.String(), got, err, sh)
		}
	}
	if _, err := standin.ParseShape("nope"); err == nil {
		t.Fatal("got nil, want an error for an unknown shape")
	}
}

// Ensure a step holds its series that much higher all along, and the CPU
// counter rises by the cost per run times the runs, in 10 ms ticks, with
// each second's increment jittered but the total within a few per cent.
func TestModels_StepAndCPU(t *testing.T) {
	p := standin.Params{Noise: 0, Seed: 3, StepSeries: "worker_db_connections_open", Step: 2, CPUPerRun: 0.005, CPUJitter: 0.5}
	byName := map[string]standin.Model{}
	for _, m := range standin.Models(p) {
		byName[m.Name] = m
	}
	if got := byName["worker_db_connections_open"].Value(30); got != 6 {
		t.Errorf("got %g connections, want 4 + 2", got)
	}
	cpu, runs := byName["process_cpu_seconds_total"], byName["worker_job_runs_total"]
	if got := runs.Value(600); got != 4200 {
		t.Errorf("got %g runs in 600 s, want 4200", got)
	}
	got := cpu.Value(600)
	if got < 0.97*21 || got > 1.03*21 {
		t.Errorf("got %g CPU seconds in 600 s, want about 4200 × 5 ms = 21", got)
	}
	if ticks := got / 0.01; math.Abs(ticks-math.Round(ticks)) > 1e-6 {
		t.Errorf("got %g, want whole 10 ms ticks", got)
	}
	var prev float64
	for s := 1; s <= 10; s++ {
		v := cpu.Value(float64(s))
		if v < prev {
			t.Fatalf("counter fell from %g to %g at %d s", prev, v, s)
		}
		prev = v
	}
	if !strings.Contains(standin.Exposition(standin.Models(p), 5), "# TYPE process_cpu_seconds_total counter\n") {
		t.Error("process_cpu_seconds_total is not exposed as a counter")
	}
}
