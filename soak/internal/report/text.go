package report

import (
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/sqlworker/worker/soak/internal/detect"
	"github.com/sqlworker/worker/soak/internal/origin"
	"github.com/sqlworker/worker/soak/internal/runner"
)

// Judgement returns the three figures behind a series' verdict, formatted
// for people: the noise measured (peak-to-peak of the detrended samples),
// the tolerance that follows from it (and where it comes from) and the
// growth of the high-water mark seen. They are "—" for a series too short
// to judge.
func Judgement(s Series) (noise, tolerance, growth string) {
	v := s.Verdict
	if v.Outcome == detect.TooShort {
		return "—", "—", "—"
	}
	growth = signedValue(v.Growth, s.Kind)
	if v.AllowedFrom == "" {
		// Fail-fast verdicts and steady series without a trend skip the
		// noise when the trend test already decided.
		return "—", "—", growth
	}
	noise = formatValue(v.Noise, s.Kind)
	tolerance = formatValue(v.Allowed, s.Kind)
	switch v.AllowedFrom {
	case "noise":
		tolerance += " (1.5 × noise)"
	case "floor":
		tolerance += " (floor)"
	case "fixed":
		tolerance += " (--tolerance)"
	}
	return noise, tolerance, growth
}

// signedValue formats a growth with its sign.
func signedValue(f float64, k detect.Kind) string {
	if f >= 0 {
		return "+" + formatValue(f, k)
	}
	return "−" + formatValue(-f, k)
}

// WriteText writes summary.txt: one line per series with its verdict, the
// noise measured, the tolerance that follows, the growth seen and the trend,
// then the verdict sentence. The command prints the same to stdout, so that
// a CI log shows why a soak failed without opening the report.
func (r *Report) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "series\tverdict\tnoise (p-p)\ttolerance\tgrowth\ttrend\tsamples")
	for _, s := range r.Series {
		noise, tol, growth := Judgement(s)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\n", s.Key, s.Verdict.Outcome, noise, tol, growth,
			formatRate(s.SlopePerHour, s.Kind), s.Verdict.N)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	r.writeOrigins(w)
	_, err := fmt.Fprintln(w, r.Verdict)
	return err
}

// writeOrigins writes, for each leaking series, the call sites that grew,
// with the command that diffs its profiles; or, on an alarm, why no origin
// is given.
func (r *Report) writeOrigins(w io.Writer) {
	o := r.Origins
	if o == nil || r.Status != runner.StatusLeak {
		return
	}
	if o.Unavailable != "" {
		fmt.Fprintf(w, "no origin given: %s\n", o.Unavailable)
		return
	}
	for _, f := range o.Findings {
		fmt.Fprintf(w, "origin of %s: %s\n", f.Series, findingHead(f))
		for _, s := range f.Sites {
			fmt.Fprintf(w, "  %10s  %s  %s:%d\n", f.Amount(s), s.Function, s.File, s.Line)
			if len(s.Callers) > 0 {
				fmt.Fprintf(w, "  %10s  called from %s\n", "", s.Callers[0])
			}
		}
		if f.Note != "" {
			fmt.Fprintf(w, "  note: %s\n", f.Note)
		}
	}
}

// findingHead says what a finding's sites measure and where its profiles
// are.
func findingHead(f origin.Finding) string {
	switch {
	case f.Profile == "":
		return "no profile"
	case f.EndFile == "":
		return "profile " + f.Profile + " not served"
	case f.Measure == "open":
		return fmt.Sprintf("profile %s, open at the end (%.0fs), none grew; go tool pprof %s", f.Profile, f.EndAt, f.EndFile)
	case f.BaseFile == "":
		return fmt.Sprintf("profile %s at the end (%.0fs); go tool pprof %s", f.Profile, f.EndAt, f.EndFile)
	}
	return fmt.Sprintf("profile %s, growth from %s (%.0fs) to the end (%.0fs); go tool pprof -base %s %s",
		f.Profile, f.Base, f.BaseAt, f.EndAt, f.BaseFile, f.EndFile)
}
