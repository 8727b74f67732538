package power

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/sqlworker/worker/soak/internal/report"
	"github.com/sqlworker/worker/soak/internal/standin"
)

// realPoint is one soak of bin/standin through bin/soak.
type realPoint struct {
	Name     string
	Length   Length // at the stand-in's time scale
	Speed    float64
	FailFast bool
	Params   standin.Params
	// Want is the exit status a correct detector gives: 1 on a leak, 0 on
	// a clean stand-in.
	Want int
}

// RealOutcome is what bin/soak said about a realPoint.
type RealOutcome struct {
	Soak    string `json:"soak"`
	Standin string `json:"standin"`
	Expect  string `json:"expect"`
	Said    string `json:"said"`
	Exit    int    `json:"exit"`
	Want    int    `json:"want"`
	At      string `json:"at"`
}

var (
	short = Lengths[0]
	mid   = Lengths[1]
	long  = Lengths[2]
)

func leakAt(series string, perHour, noise float64) standin.Params {
	return standin.Params{Profile: standin.GoService, LeakSeries: series, Leak: perHour / 3600, Noise: noise,
		Shape: standin.Uniform, Period: 20, MemNoise: 2 << 20, Seed: 11}
}

func clean(shape standin.Shape, noise, period float64) standin.Params {
	return standin.Params{Profile: standin.GoService, Noise: noise, Shape: shape, Period: period, MemNoise: 2 << 20, Seed: 12}
}

// realPoints are the points soaked for real: every claim of the 60 s
// soak, fail-fast speed, the non-Go profile, and the longer soaks with the
// stand-in's clock running 20 times faster.
func realPoints() []realPoint {
	proc := func(p standin.Params) standin.Params { p.Profile = standin.ProcessOnly; return p }
	return []realPoint{
		{"60 s: 1 FD every 5 s, quiet", short, 1, false, leakAt("process_open_fds", 720, 0), 1},
		{"60 s: goroutines +1080/h, noise 4 (rise 3.4× noise)", short, 1, false, leakAt("go_goroutines", 1080, 4), 1},
		{"60 s: connections +2160/h, noise 8", short, 1, false, leakAt("worker_db_connections_open", 2160, 8), 1},
		{"60 s: clean, uniform noise 4", short, 1, false, clean(standin.Uniform, 4, 20), 0},
		{"60 s: clean, sawtooth 8 every 12 s", short, 1, false, clean(standin.Sawtooth, 8, 12), 0},
		{"60 s: clean, bursts of 16", short, 1, false, clean(standin.Bursts, 16, 15), 0},
		{"60 s, process metrics only: 1 FD every 5 s", short, 1, false, proc(leakAt("process_open_fds", 720, 0)), 1},
		{"60 s, process metrics only: clean, noise 2", short, 1, false, proc(clean(standin.Uniform, 2, 20)), 0},
		{"60 s --fail-fast: 1 FD per second", short, 1, true, leakAt("process_open_fds", 3600, 0), 1},
		{"60 s --fail-fast: 1 statement per second, noise 2", short, 1, true, leakAt("worker_db_statements_open", 3600, 2), 1},
		{"60 s --fail-fast: 1 handle per second", short, 1, true, leakAt("worker_db_handles_open", 3600, 0), 1},
		{"10 m ×20: FDs +120/h, noise 2", mid, 20, false, leakAt("process_open_fds", 120, 2), 1},
		{"10 m ×20: clean, random walk 4", mid, 20, false, clean(standin.Walk, 4, 20), 0},
		{"30 m ×20: FDs +24/h, quiet", long, 20, false, leakAt("process_open_fds", 24, 0), 1},
		{"30 m ×20: clean, uniform noise 2", long, 20, false, clean(standin.Uniform, 2, 20), 0},
	}
}

// standinArgs returns the command line of bin/standin for p.
func standinArgs(p realPoint, addr string) []string {
	args := []string{"--listen", addr, "--profile", p.Params.Profile.String(), "--noise", fmt.Sprint(p.Params.Noise),
		"--shape", p.Params.Shape.String(), "--period", fmt.Sprint(p.Params.Period), "--seed", fmt.Sprint(p.Params.Seed),
		"--speed", fmt.Sprint(p.Speed)}
	if p.Params.Leak > 0 {
		args = append(args, "--leak-series", p.Params.LeakSeries, "--leak-rate", fmt.Sprint(p.Params.Leak))
	}
	if p.Params.Step != 0 {
		args = append(args, "--step-series", p.Params.StepSeries, "--step", fmt.Sprint(p.Params.Step))
	}
	if p.Params.CPUPerRun > 0 {
		args = append(args, "--cpu-per-run", fmt.Sprint(p.Params.CPUPerRun), "--cpu-jitter", fmt.Sprint(p.Params.CPUJitter))
	}
	return args
}

// expectation replays p's stand-in at 20 seeds and says how often the
// replay caught the leak or raised a false alarm.
func expectation(p realPoint) (string, error) {
	var pts []Point
	for s := range 20 {
		q := p.Params
		q.Seed = uint64(s) + 1000
		pts = append(pts, Point{Length: p.Length, Params: q, FailFast: p.FailFast})
	}
	outs, err := runAll(pts)
	if err != nil {
		return "", err
	}
	caught, alarms := 0, 0
	for _, o := range outs {
		if o.Caught {
			caught++
		}
		if o.Alarms > 0 {
			alarms++
		}
	}
	if p.Want == 1 {
		return fmt.Sprintf("leak (replay: caught %d/20)", caught), nil
	}
	return fmt.Sprintf("steady (replay: %d/20 false alarms)", alarms), nil
}

// runReal soaks every real point, four at a time, reports in dir.
func runReal(soakBin, standinBin, dir string) ([]RealOutcome, error) {
	pts := realPoints()
	out := make([]RealOutcome, len(pts))
	errs := make([]error, len(pts))
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	for i, p := range pts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			out[i], errs[i] = soakReal(soakBin, standinBin, filepath.Join(dir, fmt.Sprintf("%02d", i+1)), p)
		}()
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

// soakReal runs bin/soak on bin/standin for p.
func soakReal(soakBin, standinBin, dir string, p realPoint) (RealOutcome, error) {
	expect, err := expectation(p)
	if err != nil {
		return RealOutcome{}, err
	}
	code, said, sargs, err := runSoak(soakBin, standinBin, dir, p)
	if err != nil {
		return RealOutcome{}, err
	}
	o := RealOutcome{Soak: p.Name, Standin: "standin " + strings.Join(sargs[2:], " "), Expect: expect, Said: said, Exit: code, Want: p.Want}
	if rb, err := os.ReadFile(filepath.Join(dir, report.JSONFile)); err == nil {
		var r report.Report
		if err := json.Unmarshal(rb, &r); err == nil {
			after := (r.Elapsed - r.Warmup) * p.Speed
			switch {
			case code != 1:
				o.At = "—"
			case r.StoppedEarly && after < 0:
				o.At = "during warm-up (invariant)"
			case r.StoppedEarly:
				o.At = fmt.Sprintf("%.0f s (stopped early)", after)
			default:
				o.At = fmt.Sprintf("at the end, %.0f s", after)
			}
		}
	}
	return o, nil
}

// runSoak runs bin/soak on bin/standin for p, its report in dir, and
// returns its exit status, its last line and the stand-in's arguments.
func runSoak(soakBin, standinBin, dir string, p realPoint) (code int, said string, sargs []string, err error) {
	addr, err := freeAddr()
	if err != nil {
		return 0, "", nil, err
	}
	scale := func(d time.Duration) string { return (time.Duration(float64(d) / p.Speed)).String() }
	args := []string{"--duration", scale(p.Length.Duration), "--warmup", scale(p.Length.Warmup),
		"--interval", scale(time.Second), "--report-dir", dir, "--run-id", "power-" + filepath.Base(dir),
		"--metrics-url", "http://" + addr + "/metrics", "--stop-timeout", "10s"}
	if p.FailFast {
		args = append(args, "--fail-fast")
	}
	sargs = standinArgs(p, addr)
	args = append(append(args, "--", standinBin), sargs...)
	cmd := exec.Command(soakBin, args...)
	b, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		return 0, "", nil, err
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	said = strings.TrimPrefix(lines[len(lines)-1], "soak: ")
	if len(said) > 140 {
		said = said[:137] + "…"
	}
	return code, said, sargs, nil
}

// freeAddr returns a loopback address that was free a moment ago.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}
