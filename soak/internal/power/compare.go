package power

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/sqlworker/worker/soak/internal/compare"
	"github.com/sqlworker/worker/soak/internal/report"
	"github.com/sqlworker/worker/soak/internal/standin"
)

// The comparison study: pairs of replayed soaks of the stand-in, a
// baseline and a candidate with other noise (another seed), the candidate
// holding Step more of one count series all along, or spending CPUExtra
// more CPU per job run, or nothing more (clean pairs).

// CPUPerRun is the stand-in's CPU seconds per job run in the study (7 runs
// a second, each second's CPU jittered by ±CPUJitter, counted in 10 ms
// ticks as /proc does).
const (
	CPUPerRun = 0.005
	CPUJitter = 0.5
)

// Steps, StepNoises and CPUExtras are the changes tried.
var (
	Steps       = []float64{1, 2, 3, 4, 6, 8}
	StepNoises  = []float64{0, 1, 2, 4}
	StepSeries  = []string{"worker_db_connections_open", "process_open_fds"}
	CPUExtras   = []float64{0.05, 0.1, 0.2, 0.3, 0.5, 1}
	CleanShapes = []struct {
		Shape  standin.Shape
		Noise  float64
		Period float64
	}{{standin.Uniform, 0, 0}, {standin.Uniform, 1, 0}, {standin.Uniform, 2, 0}, {standin.Uniform, 4, 0},
		{standin.Walk, 4, 0}, {standin.Sawtooth, 8, 12}, {standin.Bursts, 8, 20}}
)

// Pair is one comparison of the study.
type Pair struct {
	Length     Length
	Base, Cand standin.Params
	Target     string // the row that must regress; "" for a clean pair
}

// PairOutcome is what the comparison said about a Pair.
type PairOutcome struct {
	Pair
	Caught bool          // the target row regressed
	Class  compare.Class // of the target row
	Shift  string        // of the target row, with its interval
	False  int           // other rows that regressed
	Rows   int           // other rows compared
	Status compare.Status
}

// params returns the stand-in of the study with noise nz of shape sh.
func params(seed uint64, sh standin.Shape, nz, period float64) standin.Params {
	return standin.Params{Noise: nz, Shape: sh, Period: period, MemNoise: 2 << 20, Seed: seed,
		CPUPerRun: CPUPerRun, CPUJitter: CPUJitter}
}

// comparePairs returns the pairs of the study: seeds pairs per step, noise,
// series and length, per CPU increase and length, and clean pairs per shape
// (cleanShort at 60 s, cleanMid at 10 m).
func comparePairs(seeds, cleanShort, cleanMid int) []Pair {
	var ps []Pair
	for _, l := range Lengths[:2] {
		for s := range seeds {
			seed := uint64(s + 1)
			for _, name := range StepSeries {
				for _, nz := range StepNoises {
					for _, k := range Steps {
						b, c := params(seed, standin.Uniform, nz, 0), params(seed+100_000, standin.Uniform, nz, 0)
						c.StepSeries, c.Step = name, k
						ps = append(ps, Pair{Length: l, Base: b, Cand: c, Target: name})
					}
				}
			}
			for _, x := range CPUExtras {
				b, c := params(seed, standin.Uniform, 1, 0), params(seed+100_000, standin.Uniform, 1, 0)
				c.CPUPerRun *= 1 + x
				ps = append(ps, Pair{Length: l, Base: b, Cand: c, Target: compare.CostKey})
			}
		}
		n := cleanShort
		if l.Duration > Lengths[0].Duration {
			n = cleanMid
		}
		for s := range n {
			for _, sh := range CleanShapes {
				seed := uint64(s + 1)
				ps = append(ps, Pair{Length: l, Base: params(seed, sh.Shape, sh.Noise, sh.Period),
					Cand: params(seed+100_000, sh.Shape, sh.Noise, sh.Period)})
			}
		}
	}
	return ps
}

// replayReport soaks the stand-in of p by replay and returns its report.
func replayReport(p standin.Params, l Length, id string) (*report.Report, error) {
	res, err := standin.Replay(standin.Models(p), l.Duration, l.Warmup, false)
	if err != nil {
		return nil, err
	}
	return report.New(res, report.Meta{RunID: id}), nil
}

// comparePair replays both soaks of p and compares them.
func comparePair(p Pair) (PairOutcome, error) {
	base, err := replayReport(p.Base, p.Length, "baseline")
	if err != nil {
		return PairOutcome{}, err
	}
	cand, err := replayReport(p.Cand, p.Length, "candidate")
	if err != nil {
		return PairOutcome{}, err
	}
	r := compare.Compare(base, cand, compare.Options{})
	o := PairOutcome{Pair: p, Status: r.Status}
	for _, row := range r.Rows {
		if row.Key == p.Target {
			o.Class, o.Caught, o.Shift = row.Class, row.Class == compare.Regressed, row.ShiftText(r.Level)
			continue
		}
		if row.Class != compare.NotComparable {
			o.Rows++
		}
		if row.Class == compare.Regressed {
			o.False++
		}
	}
	return o, nil
}

// runPairs compares every pair on procs goroutines.
func runPairs(pairs []Pair, procs int) ([]PairOutcome, error) {
	out := make([]PairOutcome, len(pairs))
	errs := make([]error, len(pairs))
	var wg sync.WaitGroup
	next := make(chan int)
	for range max(procs, 1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				out[i], errs[i] = comparePair(pairs[i])
			}
		}()
	}
	for i := range pairs {
		next <- i
	}
	close(next)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("pair %d: %w", i, err)
		}
	}
	return out, nil
}

// CompareMarkdown writes the comparison study's tables: per length, the
// share of pairs in which a step of k (by noise) and a CPU increase were
// flagged, and the false regressions of the clean pairs.
func CompareMarkdown(w io.Writer, os []PairOutcome) {
	for _, l := range Lengths[:2] {
		fmt.Fprintf(w, "\n### Comparisons, %s: a step held all along\n\n", l.Name)
		fmt.Fprint(w, "| series | noise |")
		for _, k := range Steps {
			fmt.Fprintf(w, " +%g |", k)
		}
		fmt.Fprint(w, "\n|---|---|"+strings.Repeat("---|", len(Steps))+"\n")
		for _, name := range StepSeries {
			for _, nz := range StepNoises {
				fmt.Fprintf(w, "| `%s` | %g |", name, nz)
				for _, k := range Steps {
					n, c := count(os, func(o PairOutcome) bool {
						return o.Length.Name == l.Name && o.Target == name && o.Cand.Noise == nz && o.Cand.Step == k
					})
					fmt.Fprintf(w, " %d/%d |", c, n)
				}
				fmt.Fprintln(w)
			}
		}
		fmt.Fprintf(w, "\n| CPU per job run | flagged |\n|---|---|\n")
		for _, x := range CPUExtras {
			n, c := count(os, func(o PairOutcome) bool {
				return o.Length.Name == l.Name && o.Target == compare.CostKey && o.Cand.CPUPerRun > CPUPerRun*(1+x-1e-9) &&
					o.Cand.CPUPerRun < CPUPerRun*(1+x+1e-9)
			})
			fmt.Fprintf(w, "| +%g %% | %d/%d |\n", x*100, c, n)
		}
	}
	fmt.Fprint(w, "\n### Clean against clean\n\n| soak | shape | pairs | with a false regression | rows compared | rows regressed |\n|---|---|---|---|---|---|\n")
	for _, l := range Lengths[:2] {
		for _, sh := range CleanShapes {
			var pairs, bad, rows, falseRows int
			for _, o := range os {
				if o.Target != "" || o.Length.Name != l.Name || o.Base.Shape != sh.Shape || o.Base.Noise != sh.Noise {
					continue
				}
				pairs++
				rows += o.Rows
				falseRows += o.False
				if o.False > 0 {
					bad++
				}
			}
			fmt.Fprintf(w, "| %s | %s %g | %d | %d | %d | %d |\n", l.Name, sh.Shape, sh.Noise, pairs, bad, rows, falseRows)
		}
	}
}

// count returns how many outcomes match, and how many of those were caught.
func count(os []PairOutcome, match func(PairOutcome) bool) (n, caught int) {
	for _, o := range os {
		if match(o) {
			n++
			if o.Caught {
				caught++
			}
		}
	}
	return n, caught
}

// falseRegressions returns the clean pairs with any regression, and the
// other rows of leaking pairs that regressed.
func falseRegressions(os []PairOutcome) (cleanBad int, other int) {
	for _, o := range os {
		if o.Target == "" && o.False > 0 {
			cleanBad++
		}
		if o.Target != "" {
			other += o.False
		}
	}
	return cleanBad, other
}

// compareConfig is the comparison study's part of the command line.
type compareConfig struct {
	on                                 bool
	seeds, cleanShort, cleanMid, procs int
}

// compareFlags declares the comparison study's flags on fs.
func compareFlags(fs *flag.FlagSet) *compareConfig {
	c := &compareConfig{}
	fs.BoolVar(&c.on, "compare", true, "run the comparison study (compare.md): pairs of soaks, a step or more CPU per run against a baseline")
	fs.IntVar(&c.seeds, "compare-seeds", 10, "pairs per step, noise, series and length, and per CPU increase and length")
	fs.IntVar(&c.cleanShort, "compare-clean-short", 10, "clean pairs per noise shape at 60 s (7 shapes)")
	fs.IntVar(&c.cleanMid, "compare-clean-mid", 3, "clean pairs per noise shape at 10 m (7 shapes)")
	fs.IntVar(&c.procs, "procs", runtime.GOMAXPROCS(0), "comparisons replayed at once")
	return c
}

// compareStudy runs the comparison study and writes compare.md into dir.
// It fails when a clean pair regressed or a real comparison ended wrong.
func compareStudy(dir string, c *compareConfig, real bool, soakBin, standinBin string, stdout io.Writer) error {
	began := time.Now()
	pairs := comparePairs(c.seeds, c.cleanShort, c.cleanMid)
	fmt.Fprintf(os.Stderr, "soakpower: replaying %d pairs of soaks for the comparison study\n", len(pairs))
	outs, err := runPairs(pairs, c.procs)
	if err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(dir, "compare.md"))
	if err != nil {
		return err
	}
	defer f.Close()
	w := io.MultiWriter(f, stdout)
	clean, other := falseRegressions(outs)
	fmt.Fprintf(w, "## Comparison study: %d pairs replayed in %s\n", len(pairs), time.Since(began).Round(time.Second))
	CompareMarkdown(w, outs)
	fmt.Fprintf(w, "\nClean pairs with a regression: %d. Rows other than the changed one that regressed in changed pairs: %d.\n", clean, other)
	wrong := 0
	if real {
		fmt.Fprintln(os.Stderr, "soakpower: soaking pairs of the stand-in for real and comparing them")
		outs, err := runRealPairs(soakBin, standinBin, filepath.Join(dir, "compare-real"))
		if err != nil {
			return err
		}
		realPairsMarkdown(w, outs)
		for _, o := range outs {
			if o.Exit != o.Want {
				wrong++
				fmt.Fprintf(os.Stderr, "soakpower: %s: exit %d, want %d: %s\n", o.Pair, o.Exit, o.Want, o.Said)
			}
		}
	}
	if err := f.Close(); err != nil {
		return err
	}
	if clean > 0 || wrong > 0 {
		return fmt.Errorf("%d clean pairs of replayed soaks compared as regressed, %d real comparisons ended wrong", clean, wrong)
	}
	return nil
}

// realPair is a comparison of two real soaks of bin/standin.
type realPair struct {
	Name       string
	Base, Cand realPoint
	Want       int // exit status of bin/soak compare: 1 regressed, 0 not
}

// RealPairOutcome is what bin/soak compare said about a realPair.
type RealPairOutcome struct {
	Pair string `json:"pair"`
	Said string `json:"said"`
	Exit int    `json:"exit"`
	Want int    `json:"want"`
}

// realPairs are the comparisons soaked for real: clean against clean, 2
// more connections and 3 more FDs in 60 s soaks, and clean against clean and
// 30 % more CPU per job run in 10 m soaks run 20 times faster.
func realPairs() []realPair {
	at := func(name string, l Length, speed float64, seed uint64, edit func(*standin.Params)) realPoint {
		p := params(seed, standin.Uniform, 1, 20)
		if edit != nil {
			edit(&p)
		}
		return realPoint{Name: name, Length: l, Speed: speed, Params: p}
	}
	base60, base10 := at("base-60s", short, 1, 21, nil), at("base-10m", mid, 20, 23, nil)
	return []realPair{
		{"60 s: clean against clean", base60, at("clean-60s", short, 1, 22, nil), 0},
		{"60 s: +2 connections", base60, at("conns-60s", short, 1, 24, func(p *standin.Params) {
			p.StepSeries, p.Step = "worker_db_connections_open", 2
		}), 1},
		{"60 s: +3 FDs", base60, at("fds-60s", short, 1, 25, func(p *standin.Params) {
			p.StepSeries, p.Step = "process_open_fds", 3
		}), 1},
		{"10 m ×20: clean against clean", base10, at("clean-10m", mid, 20, 26, nil), 0},
		{"10 m ×20: +30 % CPU per job run", base10, at("cpu-10m", mid, 20, 27, func(p *standin.Params) {
			p.CPUPerRun *= 1.3
		}), 1},
	}
}

// runRealPairs soaks every stand-in of realPairs at once through bin/soak,
// reports in dir/NAME, then compares each pair with bin/soak compare.
func runRealPairs(soakBin, standinBin, dir string) ([]RealPairOutcome, error) {
	pairs := realPairs()
	soaks := map[string]realPoint{}
	for _, p := range pairs {
		soaks[p.Base.Name], soaks[p.Cand.Name] = p.Base, p.Cand
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for name, p := range soaks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if code, said, _, err := runSoak(soakBin, standinBin, filepath.Join(dir, name), p); err != nil || code != 0 {
				mu.Lock()
				errs = append(errs, fmt.Errorf("soak %s: exit %d: %s %v", name, code, said, err))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	var out []RealPairOutcome
	for _, p := range pairs {
		b, err := exec.Command(soakBin, "compare", filepath.Join(dir, p.Base.Name), filepath.Join(dir, p.Cand.Name)).CombinedOutput()
		code := 0
		var exit *exec.ExitError
		switch {
		case errors.As(err, &exit):
			code = exit.ExitCode()
		case err != nil:
			return nil, err
		}
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		out = append(out, RealPairOutcome{Pair: p.Name, Said: strings.TrimPrefix(lines[len(lines)-1], "soak: "), Exit: code, Want: p.Want})
	}
	return out, nil
}

// realPairsMarkdown writes the real comparisons' table.
func realPairsMarkdown(w io.Writer, os []RealPairOutcome) {
	fmt.Fprint(w, "\n### Real comparisons (bin/soak compare on soaks of bin/standin)\n\n| pair | bin/soak compare said | exit | want |\n|---|---|---|---|\n")
	for _, o := range os {
		fmt.Fprintf(w, "| %s | %s | %d | %d |\n", o.Pair, strings.ReplaceAll(o.Said, "|", `\|`), o.Exit, o.Want)
	}
}
