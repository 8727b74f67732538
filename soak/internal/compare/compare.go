// Package compare judges one soak (the candidate) against another (the
// baseline): for each watched series, and for the CPU seconds per job run,
// whether the candidate's level after warm-up is higher (regressed), lower
// (improved) or the same as the baseline's, in the spirit of Kayenta's
// Mann–Whitney judge.
//
// The samples of a soak are scraped once a second and strongly
// autocorrelated: a gauge sits on one value for long stretches, a random
// walk drifts. A rank test on raw scrapes would treat 45 samples as 45
// independent draws and call a wander "significant". So each side's judged
// samples are cut into about TargetBlocks consecutive blocks of at least
// MinBlockSamples scrapes, and the test sees one mean per block (batch
// means). Even so a block mean is not independent of the next one on a
// slow walk, and two runs of the same build sit at slightly different
// levels, which no test inside one run can know. Significance is therefore
// not enough: the Hodges–Lehmann shift must also exceed a tolerance taken
// from the noise, NoiseFactor times the peak-to-peak spread of the
// detrended samples (as the trend verdict measures it; the larger of both
// sides', since a slow walk can sit still through one soak and wander in
// the other), never less than the series' floor. Two runs' levels cannot
// differ by more than that spread without a change in the build, however
// loud the noise.
//
// The CPU seconds per job run moves between runs with the machine's load,
// which no spread within a run shows, so for it the whole interval of the
// shift must clear the tolerance.
//
// Every watched resource is worse when higher, so only a rise regresses.
package compare

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"

	"github.com/sqlworker/worker/soak/internal/detect"
	"github.com/sqlworker/worker/soak/internal/report"
	"github.com/sqlworker/worker/soak/internal/runner"
)

// Parameters of the comparison.
const (
	// DefaultAlpha is the one-sided significance the rank test must reach,
	// per series: a dozen series per comparison keep the family's chance
	// of a false "significant" near 1 %, before the tolerance.
	DefaultAlpha = 1e-3
	// DefaultLevel is the confidence of the shift's interval.
	DefaultLevel = 0.95
	// NoiseFactor times the baseline's noise is the tolerance, as in the
	// trend verdict.
	NoiseFactor = 1.5
	// TargetBlocks is how many blocks each side is cut into, and
	// MinBlockSamples the fewest scrapes in a block: a 60 s soak has 9
	// blocks of 5 s, a 10 m soak 12 of 47 s.
	TargetBlocks    = 12
	MinBlockSamples = 5
	// MinBlocks is the fewest blocks a side needs to be compared: with 7
	// against 7 the rank test cannot reach DefaultAlpha even when every
	// candidate block is above every baseline block (p = 0.0011), so such
	// a row could never regress; it is "not comparable" instead of a pass
	// that proves nothing. A 60 s soak has 9.
	MinBlocks = 8
	// CostFloor is the least tolerance of the cost per job run, relative
	// to the baseline's: a tenth.
	CostFloor = 0.10
)

// CostKey names the cost per job run among the rows.
const CostKey = "cpu_seconds_per_job_run"

// Class is the judgement of one row.
type Class string

// Classes of a row.
const (
	Regressed     Class = "regressed"
	Improved      Class = "improved"
	Unchanged     Class = "unchanged"
	NotComparable Class = "not comparable"
)

// Status is the outcome of the whole comparison, and the exit status.
type Status string

// Outcomes of a comparison.
const (
	StatusPass      Status = "pass"      // nothing regressed: exit 0
	StatusRegressed Status = "regressed" // exit 1
	StatusError     Status = "error"     // could not compare: exit 2
)

// Options tune a comparison.
type Options struct {
	Alpha float64 // DefaultAlpha when zero
	Level float64 // DefaultLevel when zero
	Force bool    // compare unlike soaks
}

// Side names one soak of the comparison.
type Side struct {
	RunID   string `json:"run_id"`
	Source  string `json:"source,omitempty"` // where its report.json was read
	Version string `json:"target_version"`
	Verdict string `json:"verdict"`
}

// Row is the comparison of one series, or of the cost per job run.
type Row struct {
	Key  string `json:"key"`
	Unit string `json:"unit"` // count, bytes or CPU s/run
	// Class is the judgement and Reason its one clause for people.
	Class  Class  `json:"class"`
	Reason string `json:"reason"`
	// Baseline and Candidate are the medians of each side's block means;
	// Shift the Hodges–Lehmann shift of the candidate's block means against
	// the baseline's, within [Low, High] at the comparison's level.
	Baseline  float64 `json:"baseline"`
	Candidate float64 `json:"candidate"`
	Shift     float64 `json:"shift"`
	Low       float64 `json:"low"`
	High      float64 `json:"high"`
	// P is the one-sided Mann–Whitney p-value that the candidate is higher
	// (PLow: lower).
	P    float64 `json:"p_higher"`
	PLow float64 `json:"p_lower"`
	// Noise is the larger of both sides' (for the cost: the spread of the
	// baseline's block costs over √blocks), Tolerance the shift still
	// healthy and
	// ToleranceFrom where it comes from (noise, floor, fixed).
	Noise         float64 `json:"noise"`
	Tolerance     float64 `json:"tolerance"`
	ToleranceFrom string  `json:"tolerance_from"`
	Blocks        [2]int  `json:"blocks"` // baseline's, candidate's
	BlockSeconds  float64 `json:"block_seconds"`
	// IntervalBeyond makes the whole interval, not only the shift, have
	// to clear the tolerance: for the cost, which moves between runs.
	IntervalBeyond bool `json:"interval_beyond,omitempty"`
}

// Result is the comparison of a candidate soak with its baseline.
type Result struct {
	Baseline    Side     `json:"baseline"`
	Candidate   Side     `json:"candidate"`
	Level       float64  `json:"level"`
	Alpha       float64  `json:"alpha"`
	Differences []string `json:"differences"` // what makes them unlike
	Notes       []string `json:"notes"`       // what differs but is allowed
	Forced      bool     `json:"forced"`
	Rows        []Row    `json:"rows"`
	Status      Status   `json:"status"`
	Verdict     string   `json:"verdict"`
}

// Compare judges cand against base.
func Compare(base, cand *report.Report, opt Options) *Result {
	if opt.Alpha <= 0 {
		opt.Alpha = DefaultAlpha
	}
	if opt.Level <= 0 || opt.Level >= 1 {
		opt.Level = DefaultLevel
	}
	r := &Result{Baseline: side(base), Candidate: side(cand), Level: opt.Level, Alpha: opt.Alpha, Forced: opt.Force,
		Differences: []string{}, Notes: []string{}, Rows: []Row{}}
	r.Differences, r.Notes = Unlike(base, cand)
	if len(r.Differences) > 0 && !opt.Force {
		r.Status = StatusError
		r.Verdict = fmt.Sprintf("could not compare: unlike soaks: %s; --force compares them anyway.", strings.Join(r.Differences, "; "))
		return r
	}
	for _, cs := range cand.Series {
		i := slices.IndexFunc(base.Series, func(b report.Series) bool { return b.Key == cs.Key })
		if i < 0 {
			r.Rows = append(r.Rows, Row{Key: cs.Key, Unit: unit(cs.Kind), Class: NotComparable, Reason: "not in the baseline"})
			continue
		}
		r.Rows = append(r.Rows, compareSeries(base.Series[i], cs, base.Warmup, cand.Warmup, opt))
	}
	for _, bs := range base.Series {
		if !slices.ContainsFunc(cand.Series, func(c report.Series) bool { return c.Key == bs.Key }) {
			r.Rows = append(r.Rows, Row{Key: bs.Key, Unit: unit(bs.Kind), Class: NotComparable, Reason: "not in the candidate"})
		}
	}
	if row, ok := compareCost(base, cand, opt); ok {
		r.Rows = append(r.Rows, row)
	}
	r.Status, r.Verdict = r.sentence()
	return r
}

func side(rep *report.Report) Side {
	s := Side{RunID: rep.RunID, Version: "unknown", Verdict: rep.Verdict}
	if rep.Like != nil {
		s.Version = rep.Like.TargetVersion
	}
	return s
}

func unit(k detect.Kind) string {
	if k == detect.Memory {
		return "bytes"
	}
	return "count"
}

// Unlike returns what makes two soaks unlike (differences, which refuse a
// comparison) and what differs without making them so (notes: the build
// under comparison, and the Go it was built with).
func Unlike(base, cand *report.Report) (differences, notes []string) {
	differences, notes = []string{}, []string{}
	for _, x := range []struct {
		name string
		rep  *report.Report
	}{{"baseline", base}, {"candidate", cand}} {
		if x.rep.Status == runner.StatusError {
			differences = append(differences, x.name+" could not soak ("+x.rep.Verdict+")")
		}
	}
	if base.Status == runner.StatusLeak {
		notes = append(notes, "the baseline itself did not pass: "+base.Verdict)
	}
	b, c := base.Like, cand.Like
	if b == nil || c == nil {
		return append(differences, "a report without what makes soaks comparable (written by an older harness)"), notes
	}
	diff := func(what string, bv, cv any) {
		if fmt.Sprint(bv) != fmt.Sprint(cv) {
			differences = append(differences, fmt.Sprintf("%s %v against %v", what, bv, cv))
		}
	}
	diff("config hash", short(b.ConfigHash), short(c.ConfigHash))
	diff("duration", secs(b.Duration), secs(c.Duration))
	diff("warm-up", secs(b.Warmup), secs(c.Warmup))
	diff("interval", secs(b.Interval), secs(c.Interval))
	diff("replicas", b.Replicas, c.Replicas)
	diff("watch list", strings.Join(b.Watch, ","), strings.Join(c.Watch, ","))
	diff("cores", b.Machine.Cores, c.Machine.Cores)
	if b.Machine.CPU != "" && c.Machine.CPU != "" { // older reports lack it
		diff("CPU", b.Machine.CPU, c.Machine.CPU)
	}
	diff("kernel", b.Machine.Kernel, c.Machine.Kernel)
	diff("arch", b.Machine.Arch, c.Machine.Arch)
	diff("harness Go", b.Machine.GoVersion, c.Machine.GoVersion)
	if b.TargetVersion != c.TargetVersion {
		notes = append(notes, fmt.Sprintf("target version %s against %s", b.TargetVersion, c.TargetVersion))
	}
	if b.TargetBinary != c.TargetBinary && b.TargetBinary != "" && c.TargetBinary != "" {
		notes = append(notes, fmt.Sprintf("target binary %s against %s", short(b.TargetBinary), short(c.TargetBinary)))
	}
	if lb, lc := b.Machine.Load[1], c.Machine.Load[1]; math.Abs(lb-lc) > 0.5 && math.Abs(lb-lc) > 0.25*max(lb, lc) {
		notes = append(notes, fmt.Sprintf("machine load (5 min) %.2f against %.2f: the CPU per job run rises on a busy machine", lb, lc))
	}
	if b.TargetGo != c.TargetGo {
		notes = append(notes, fmt.Sprintf("target built with %s against %s", b.TargetGo, c.TargetGo))
	}
	return differences, notes
}

func short(h string) string {
	if h == "" {
		return "(none)"
	}
	return h[:min(len(h), 12)]
}

func secs(s float64) string { return fmt.Sprintf("%gs", s) }

// WriteJSON writes the comparison as compare.json.
func (r *Result) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", " ")
	return enc.Encode(r)
}

// Regressions returns the rows that regressed.
func (r *Result) Regressions() []Row { return r.class(Regressed) }

func (r *Result) class(c Class) []Row {
	var out []Row
	for _, row := range r.Rows {
		if row.Class == c {
			out = append(out, row)
		}
	}
	return out
}

// sentence returns the status and the one-line verdict.
func (r *Result) sentence() (Status, string) {
	against := "baseline " + r.Baseline.RunID
	if reg := r.Regressions(); len(reg) > 0 {
		parts := make([]string, len(reg))
		for i, row := range reg {
			parts[i] = row.Key + " " + row.ShiftText(r.Level)
		}
		return StatusRegressed, fmt.Sprintf("REGRESSED against %s: %s.", against, strings.Join(parts, "; "))
	}
	compared := len(r.Rows) - len(r.class(NotComparable))
	if compared == 0 {
		return StatusError, fmt.Sprintf("could not compare with %s: no series comparable (%s).", against, notComparable(r.class(NotComparable)))
	}
	s := fmt.Sprintf("NO REGRESSION against %s: %d compared, %d unchanged, %d improved", against, compared,
		len(r.class(Unchanged)), len(r.class(Improved)))
	if imp := r.class(Improved); len(imp) > 0 {
		parts := make([]string, len(imp))
		for i, row := range imp {
			parts[i] = row.Key + " " + row.Signed(row.Shift)
		}
		s += " (" + strings.Join(parts, ", ") + ")"
	}
	if nc := r.class(NotComparable); len(nc) > 0 {
		s += fmt.Sprintf("; %d not comparable: %s", len(nc), notComparable(nc))
	}
	return StatusPass, s + "."
}

func notComparable(rows []Row) string {
	parts := make([]string, len(rows))
	for i, row := range rows {
		parts[i] = row.Key + " (" + row.Reason + ")"
	}
	return strings.Join(parts, ", ")
}

// ShiftText says the shift with its interval and tolerance:
// "+2 (95% CI +2 to +2; tolerance 1.5)", and for memory and cost its share
// of the baseline: "+1.5 ms = +30% (95% CI …)".
func (r Row) ShiftText(level float64) string {
	est := r.Signed(r.Shift)
	if (r.Unit == "bytes" || r.Unit == CostUnit) && r.Baseline > 0 {
		pct := 100 * r.Shift / r.Baseline
		sign := "+"
		if pct < 0 {
			sign, pct = "−", -pct
		}
		est += fmt.Sprintf(" = %s%.0f%%", sign, pct)
	}
	return fmt.Sprintf("%s (%g%% CI %s to %s; tolerance %s)", est, math.Round(level*100),
		r.Signed(r.Low), r.Signed(r.High), r.Format(r.Tolerance))
}

// Format formats a value of the row's unit.
func (r Row) Format(v float64) string {
	switch r.Unit {
	case "bytes":
		return detect.Format(v, detect.Memory)
	case CostUnit:
		if math.Abs(v) < 1e-9 {
			v = 0 // the sum of float costs leaves crumbs: 6e-15 ms is 0
		}
		return fmt.Sprintf("%.3g ms", v*1000)
	}
	return detect.Format(v, detect.Count)
}

// Signed formats a signed value of the row's unit.
func (r Row) Signed(v float64) string {
	if v < 0 {
		return "−" + r.Format(-v)
	}
	return "+" + r.Format(v)
}
