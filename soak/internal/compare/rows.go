package compare

import (
	"fmt"
	"math"
	"slices"

	"github.com/sqlworker/worker/soak/internal/detect"
	"github.com/sqlworker/worker/soak/internal/report"
)

// CostUnit is the unit of the cost row.
const CostUnit = "CPU s/run"

// judged returns the samples of s taken at or after warmup seconds.
func judged(samples [][2]float64, warmup float64) (ts, vs []float64) {
	for _, p := range samples {
		if p[0] >= warmup {
			ts, vs = append(ts, p[0]), append(vs, p[1])
		}
	}
	return ts, vs
}

// blockSize returns how many consecutive samples of n make one block.
func blockSize(n int) int {
	return max(MinBlockSamples, n/TargetBlocks)
}

// blockMeans cuts xs into blocks of blockSize samples (the last one takes
// the remainder) and returns their means, and the seconds a block spans.
func blockMeans(ts, xs []float64) (means []float64, seconds float64) {
	b := blockSize(len(xs))
	k := len(xs) / b
	for j := range k {
		end := (j + 1) * b
		if j == k-1 {
			end = len(xs)
		}
		var sum float64
		for _, x := range xs[j*b : end] {
			sum += x
		}
		means = append(means, sum/float64(end-j*b))
	}
	if len(ts) > 1 {
		seconds = (ts[len(ts)-1] - ts[0]) / float64(len(ts)-1) * float64(b)
	}
	return means, seconds
}

// noise returns the baseline's noise as the trend verdict measures it: the
// peak-to-peak spread of its detrended samples, the smaller of around one
// line and around each third's own.
func noise(ts, xs []float64) float64 {
	tt, tx := detect.Thin(ts, xs, 1000)
	slope, _ := detect.TheilSen(tt, tx)
	return min(detect.Noise(ts, xs, slope), detect.ThirdsNoise(ts, xs, 300))
}

// compareSeries compares one watched series.
func compareSeries(bs, cs report.Series, bWarm, cWarm float64, opt Options) Row {
	row := Row{Key: cs.Key, Unit: unit(cs.Kind)}
	bt, bv := judged(bs.Samples, bWarm)
	ct, cv := judged(cs.Samples, cWarm)
	bm, sec := blockMeans(bt, bv)
	cm, _ := blockMeans(ct, cv)
	row.Blocks, row.BlockSeconds = [2]int{len(bm), len(cm)}, sec
	if len(bm) < MinBlocks || len(cm) < MinBlocks {
		row.Class = NotComparable
		row.Reason = fmt.Sprintf("too short: %d and %d blocks, want %d", len(bm), len(cm), MinBlocks)
		return row
	}
	// The larger of both sides' noise: a slow walk can sit still for the
	// whole of one soak and wander in the other.
	row.Noise = max(noise(bt, bv), noise(ct, cv))
	row.Tolerance, row.ToleranceFrom = NoiseFactor*row.Noise, "noise"
	floor := bs.Floor
	if bs.Fixed {
		floor = bs.Tolerance
		if bs.Kind == detect.Memory {
			floor = max(bs.Floor, bs.Tolerance*median(bm))
		}
		row.Tolerance, row.ToleranceFrom = floor, "fixed"
	} else if row.Tolerance < floor {
		row.Tolerance, row.ToleranceFrom = floor, "floor"
	}
	judge(&row, bm, cm, opt)
	return row
}

// judge fills the shift, its interval, the p-values and the class of row
// from the block values of both sides.
func judge(row *Row, base, cand []float64, opt Options) {
	row.Baseline, row.Candidate = median(base), median(cand)
	mw := MannWhitneyTest(base, cand)
	row.P, row.PLow = mw.PHigh, mw.PLow
	row.Shift, row.Low, row.High = HodgesLehmann(base, cand, opt.Level)
	within := fmt.Sprintf("tolerance %s (%s)", row.Format(row.Tolerance), tolWhy(*row))
	up, down := row.Shift, row.Shift
	if row.IntervalBeyond {
		up, down = row.Low, row.High
	}
	switch {
	case up > row.Tolerance && row.P < opt.Alpha:
		row.Class = Regressed
		row.Reason = fmt.Sprintf("%s above the baseline's %s, beyond %s; p = %.2g", row.ShiftText(opt.Level),
			row.Format(row.Baseline), within, row.P)
	case down < -row.Tolerance && row.PLow < opt.Alpha:
		row.Class = Improved
		row.Reason = fmt.Sprintf("%s below the baseline's %s, beyond %s; p = %.2g", row.ShiftText(opt.Level),
			row.Format(row.Baseline), within, row.PLow)
	case math.Abs(row.Shift) <= row.Tolerance:
		row.Class = Unchanged
		row.Reason = fmt.Sprintf("shift %s within %s", row.Signed(row.Shift), within)
	case row.IntervalBeyond:
		row.Class = Unchanged
		row.Reason = fmt.Sprintf("shift %s beyond %s, but not its whole interval (%s to %s)", row.Signed(row.Shift), within,
			row.Signed(row.Low), row.Signed(row.High))
	default:
		row.Class = Unchanged
		row.Reason = fmt.Sprintf("shift %s beyond %s but not significant (p = %.2g)", row.Signed(row.Shift), within,
			min(row.P, row.PLow))
	}
}

// tolWhy says where the tolerance of r comes from, for its reason.
func tolWhy(r Row) string {
	switch r.ToleranceFrom {
	case "noise":
		if r.Unit == CostUnit {
			return fmt.Sprintf("%g × the baseline's block spread / √blocks", NoiseFactor)
		}
		return fmt.Sprintf("%g × the noise %s", NoiseFactor, r.Format(r.Noise))
	case "floor":
		if r.Unit == CostUnit {
			return fmt.Sprintf("floor: %g%% of the baseline", CostFloor*100)
		}
		return "floor"
	}
	return "--tolerance of the baseline"
}

// compareCost compares the CPU seconds per job run, block by block: the
// CPU spent in a block over the job runs finished in it. It is false when
// neither soak exposed both counters.
func compareCost(base, cand *report.Report, opt Options) (Row, bool) {
	bc, bsec, bok := costBlocks(base)
	cc, _, cok := costBlocks(cand)
	if !bok && !cok {
		return Row{}, false
	}
	row := Row{Key: CostKey, Unit: CostUnit, Blocks: [2]int{len(bc), len(cc)}, BlockSeconds: bsec}
	switch {
	case !bok || !cok:
		row.Class, row.Reason = NotComparable, "process_cpu_seconds_total or worker_job_runs_total missing on one side"
		return row, true
	case len(bc) < MinBlocks || len(cc) < MinBlocks:
		row.Class = NotComparable
		row.Reason = fmt.Sprintf("too short: %d and %d blocks with job runs, want %d", len(bc), len(cc), MinBlocks)
		return row, true
	}
	lo, hi := slices.Min(bc), slices.Max(bc)
	row.Noise = (hi - lo) / math.Sqrt(float64(len(bc)))
	row.Tolerance, row.ToleranceFrom = NoiseFactor*row.Noise, "noise"
	if floor := CostFloor * median(bc); row.Tolerance < floor {
		row.Tolerance, row.ToleranceFrom = floor, "floor"
	}
	// CPU time per unit of work moves between runs with the machine's
	// load (SMT siblings, frequency), which no spread within a run shows:
	// the whole interval must clear the tolerance.
	row.IntervalBeyond = true
	judge(&row, bc, cc, opt)
	return row, true
}

// costBlocks returns the CPU seconds per job run of each block of rep's
// judged samples, and the seconds a block spans; false when rep lacks
// either counter.
func costBlocks(rep *report.Report) ([]float64, float64, bool) {
	var cpu, runs []report.WorkSeries
	for _, w := range rep.Work {
		switch w.Name {
		case "process_cpu_seconds_total":
			cpu = append(cpu, w)
		case "worker_job_runs_total":
			runs = append(runs, w)
		}
	}
	if len(cpu) == 0 || len(runs) == 0 {
		return nil, 0, false
	}
	var ts []float64
	for _, w := range slices.Concat(cpu, runs) {
		for _, p := range w.Samples {
			if p[0] >= rep.Warmup {
				ts = append(ts, p[0])
			}
		}
	}
	slices.Sort(ts)
	ts = slices.Compact(ts)
	c, r := sumAt(cpu, ts), sumAt(runs, ts)
	b := blockSize(len(ts))
	k := len(ts) / b
	var out []float64
	for j := range k {
		from, to := j*b, min((j+1)*b, len(ts)-1)
		if j == k-1 {
			to = len(ts) - 1
		}
		if dr := r[to] - r[from]; dr > 0 {
			out = append(out, (c[to]-c[from])/dr)
		}
	}
	var sec float64
	if len(ts) > 1 {
		sec = (ts[len(ts)-1] - ts[0]) / float64(len(ts)-1) * float64(b)
	}
	return out, sec, true
}

// sumAt returns, at each of ts, the sum over ws of its latest value at or
// before that time: a counter not yet exposed counts 0.
func sumAt(ws []report.WorkSeries, ts []float64) []float64 {
	out := make([]float64, len(ts))
	for _, w := range ws {
		j, last := 0, 0.0
		for i, t := range ts {
			for j < len(w.Samples) && w.Samples[j][0] <= t {
				last = w.Samples[j][1]
				j++
			}
			out[i] += last
		}
	}
	return out
}
