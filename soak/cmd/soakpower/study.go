package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"time"
)

// Study is everything the sweep measured.
type Study struct {
	Seeds      int
	Power      []Outcome
	Clean      []Outcome
	FailFast   []Outcome
	Real       []RealOutcome
	ReplayTook time.Duration
	Took       time.Duration
}

// cell is the outcomes of one point of the grid.
type cell struct {
	n, caught, undecided int
	at                   []float64
	rise, noise          float64
}

func (c cell) rate() float64 {
	if c.n == 0 {
		return 0
	}
	return float64(c.caught) / float64(c.n)
}

type key struct {
	length string
	noise  float64
	rate   float64
}

func group(os []Outcome) map[key]*cell {
	m := map[key]*cell{}
	for _, o := range os {
		k := key{o.Length.Name, o.Params.Noise, math.Round(o.Params.Leak * 3600)}
		c := m[k]
		if c == nil {
			c = &cell{}
			m[k] = c
		}
		c.n++
		c.rise += o.Rise
		c.noise += o.Noise
		if o.Caught {
			c.caught++
			c.at = append(c.at, o.At)
		}
		if o.Undecided {
			c.undecided++
		}
	}
	for _, c := range m {
		c.rise /= float64(c.n)
		c.noise /= float64(c.n)
	}
	return m
}

// slowest returns the slowest rate of l (per hour) from which on every
// faster rate is caught in at least frac of the soaks, and whether there is
// one.
func slowest(m map[key]*cell, l Length, noise, frac float64) (float64, bool) {
	rates := slices.Clone(l.Rates)
	slices.Sort(rates)
	best, ok := 0.0, false
	for i := len(rates) - 1; i >= 0; i-- {
		c := m[key{l.Name, noise, rates[i]}]
		if c == nil || c.rate() < frac {
			break
		}
		best, ok = rates[i], true
	}
	return best, ok
}

// judged returns the judged seconds of a soak of l.
func judged(l Length) float64 { return (l.Duration - l.Warmup).Seconds() }

// Markdown writes the study's tables.
func (st *Study) Markdown(w io.Writer) {
	pm := group(st.Power)
	fmt.Fprintf(w, "## Detection power (measured by `make soak-power`)\n\n")
	fmt.Fprintf(w, "%d leaking soaks replayed (%d per point), %d clean ones, %d under --fail-fast; replay took %s",
		len(st.Power), st.Seeds, len(st.Clean), len(st.FailFast), st.ReplayTook.Round(time.Second))
	if len(st.Real) > 0 {
		fmt.Fprintf(w, ", %d real soaks of bin/standin, all in %s", len(st.Real), st.Took.Round(time.Second))
	}
	fmt.Fprint(w, ".")
	slowestTable(w, pm)
	caughtTables(w, pm)
	st.falseAlarms(w)
	st.failFastTable(w)
	st.realTable(w)
}

// slowestTable writes the slowest leak caught at each length and noise.
func slowestTable(w io.Writer, pm map[key]*cell) {
	fmt.Fprintf(w, "\n\n### Slowest leak caught\n\n")
	fmt.Fprintf(w, "The slowest leak, per hour, caught in at least 95 %% of the soaks (and every faster one too); in brackets the rise over the judged window in steps, and that rise over the noise the detector measured on the series (peak-to-peak of its detrended samples, mean over the soaks; a staircase leak adds up to one step to it).\n\n")
	fmt.Fprint(w, "| noise (peak-to-peak) |")
	for _, l := range Lengths {
		fmt.Fprintf(w, " %s |", l.Name)
	}
	fmt.Fprint(w, "\n|---|")
	for range Lengths {
		fmt.Fprint(w, "---|")
	}
	fmt.Fprintln(w)
	for _, nz := range Noises {
		fmt.Fprintf(w, "| %g |", nz)
		for _, l := range Lengths {
			r, ok := slowest(pm, l, nz, 0.95)
			if !ok {
				fmt.Fprintf(w, " > %g/h |", slices.Max(l.Rates))
				continue
			}
			rise := r / 3600 * judged(l)
			c := pm[key{l.Name, nz, r}]
			ratio := "measured noise 0"
			if c.noise > 0 {
				ratio = fmt.Sprintf("%.1f× measured noise %.1f", rise/c.noise, c.noise)
			}
			fmt.Fprintf(w, " %s/h (%.0f steps, %s) |", num(r), rise, ratio)
		}
		fmt.Fprintln(w)
	}
}

// caughtTables writes, per length, the share of soaks that caught each
// leak rate at each noise.
func caughtTables(w io.Writer, pm map[key]*cell) {
	for _, l := range Lengths {
		fmt.Fprintf(w, "\n### Caught at %s: %% of soaks (too noisy to decide, %%)\n\n| leak /h | rise |", l.Name)
		for _, nz := range Noises {
			fmt.Fprintf(w, " noise %g |", nz)
		}
		fmt.Fprint(w, "\n|---|---|")
		for range Noises {
			fmt.Fprint(w, "---|")
		}
		fmt.Fprintln(w)
		for _, r := range l.Rates {
			fmt.Fprintf(w, "| %s | %.1f |", num(r), r/3600*judged(l))
			for _, nz := range Noises {
				c := pm[key{l.Name, nz, r}]
				if c == nil {
					fmt.Fprint(w, " |")
					continue
				}
				u := ""
				if c.undecided > 0 {
					u = fmt.Sprintf(" (%d)", pct(c.undecided, c.n))
				}
				fmt.Fprintf(w, " %d%s |", pct(c.caught, c.n), u)
			}
			fmt.Fprintln(w)
		}
	}
}

// falseAlarms writes the false alarms of the clean soaks.
func (st *Study) falseAlarms(w io.Writer) {
	fmt.Fprintf(w, "\n### False alarms on clean series\n\nNothing leaks; every count series carries the noise, memory swings like a GC heap by 2 MiB. A false alarm is any series judged a leak.\n\n")
	fmt.Fprint(w, "| soak | noise | soaks | soaks with a false alarm | series judged | series flagged | too noisy to decide |\n|---|---|---|---|---|---|---|\n")
	type fk struct {
		length, shape string
		noise         float64
		period        float64
	}
	type fa struct{ soaks, alarms, series, flagged, undecided int }
	fm := map[fk]*fa{}
	var order []fk
	for _, o := range st.Clean {
		k := fk{o.Length.Name, o.Params.Shape.String(), o.Params.Noise, o.Params.Period}
		c := fm[k]
		if c == nil {
			c = &fa{}
			fm[k] = c
			order = append(order, k)
		}
		c.soaks++
		if o.Alarms > 0 {
			c.alarms++
		}
		c.series += o.Clean
		c.flagged += o.Alarms
		c.undecided += o.Unsure
	}
	totals := map[string]*fa{}
	for _, k := range order {
		c := fm[k]
		shape := k.shape
		if shape == "sawtooth" || shape == "bursts" || shape == "gc" {
			shape = fmt.Sprintf("%s (%g s)", shape, k.period)
		}
		fmt.Fprintf(w, "| %s | %s %g | %d | %d | %d | %d | %d |\n", k.length, shape, k.noise, c.soaks, c.alarms, c.series, c.flagged, c.undecided)
		t := totals[k.length]
		if t == nil {
			t = &fa{}
			totals[k.length] = t
		}
		t.soaks += c.soaks
		t.alarms += c.alarms
		t.series += c.series
		t.flagged += c.flagged
		t.undecided += c.undecided
	}
	for _, l := range Lengths {
		if t := totals[l.Name]; t != nil {
			fmt.Fprintf(w, "| **%s, all** | | %d | %d (%.2g %%) | %d | %d (%.2g %%) | %d |\n", l.Name, t.soaks, t.alarms,
				100*float64(t.alarms)/float64(t.soaks), t.series, t.flagged, 100*float64(t.flagged)/float64(t.series), t.undecided)
		}
	}
}

// failFastTable writes the time to a verdict under --fail-fast.
func (st *Study) failFastTable(w io.Writer) {
	fm2 := group(st.FailFast)
	fmt.Fprintf(w, "\n### Time to a verdict under --fail-fast\n\nSeconds after warm-up until the soak stopped on the leak: median / slowest, and %% caught before the soak's end.\n\n")
	fmt.Fprint(w, "| soak | leak /h | noise 0 | noise 2 | noise 8 |\n|---|---|---|---|---|\n")
	for _, l := range Lengths[:2] {
		for _, r := range []float64{36000, 7200, 3600, 1440, 720} {
			fmt.Fprintf(w, "| %s | %s |", l.Name, num(r))
			for _, nz := range []float64{0, 2, 8} {
				c := fm2[key{l.Name, nz, r}]
				if c == nil || c.caught == 0 {
					fmt.Fprint(w, " not caught |")
					continue
				}
				fmt.Fprintf(w, " %.0f / %.0f s (%d %%) |", median(c.at), slices.Max(c.at), pct(c.caught, c.n))
			}
			fmt.Fprintln(w)
		}
	}
}

// realTable writes the real soaks of the stand-in.
func (st *Study) realTable(w io.Writer) {
	if len(st.Real) > 0 {
		fmt.Fprintf(w, "\n### Real soaks of the stand-in through bin/soak\n\n")
		fmt.Fprint(w, "| soak | stand-in | expected | bin/soak said | exit | verdict after warm-up |\n|---|---|---|---|---|---|\n")
		for _, r := range st.Real {
			fmt.Fprintf(w, "| %s | %s | %s | %s | %d | %s |\n", r.Soak, r.Standin, r.Expect, r.Said, r.Exit, r.At)
		}
	}
}

// Summary is the study in JSON.
func (st *Study) Summary() any {
	pm := group(st.Power)
	type row struct {
		Length   string  `json:"length"`
		Noise    float64 `json:"noise"`
		Rate     float64 `json:"leak_per_hour"`
		Rise     float64 `json:"rise"`
		Measured float64 `json:"measured_noise"`
		Soaks    int     `json:"soaks"`
		Caught   int     `json:"caught"`
		TooMuch  int     `json:"undecided"`
	}
	var rows []row
	for _, l := range Lengths {
		for _, nz := range Noises {
			for _, r := range l.Rates {
				if c := pm[key{l.Name, nz, r}]; c != nil {
					rows = append(rows, row{l.Name, nz, r, c.rise, c.noise, c.n, c.caught, c.undecided})
				}
			}
		}
	}
	falseAlarms, cleanSeries := 0, 0
	for _, o := range st.Clean {
		falseAlarms += o.Alarms
		cleanSeries += o.Clean
	}
	return map[string]any{"power": rows, "clean_series": cleanSeries, "false_alarms": falseAlarms, "real": st.Real,
		"replay_seconds": st.ReplayTook.Seconds(), "seconds": st.Took.Seconds()}
}

func pct(a, b int) int {
	if b == 0 {
		return 0
	}
	return int(math.Round(100 * float64(a) / float64(b)))
}

func num(f float64) string {
	switch {
	case f >= 1000 && f == math.Trunc(f):
		s := fmt.Sprintf("%.0f", f)
		out := ""
		for i, c := range s {
			if i > 0 && (len(s)-i)%3 == 0 {
				out += ","
			}
			out += string(c)
		}
		return out
	default:
		return fmt.Sprintf("%g", f)
	}
}
