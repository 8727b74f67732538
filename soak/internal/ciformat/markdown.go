package ciformat

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/sqlworker/worker/soak/internal/compare"
	"github.com/sqlworker/worker/soak/internal/detect"
	"github.com/sqlworker/worker/soak/internal/report"
	"github.com/sqlworker/worker/soak/internal/runner"
)

// SoakMarkdown writes the summary of a soak: the verdict, a table of the
// series (verdict, noise, tolerance, growth, trend) and the invariants.
func SoakMarkdown(w io.Writer, rep *report.Report) error {
	icon := "✅"
	switch rep.Status {
	case runner.StatusLeak:
		icon = "❌"
	case runner.StatusError:
		icon = "⚠️"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "### %s Soak %s\n\n**%s**\n\n", icon, cell(rep.RunID), cell(rep.Verdict))
	if len(rep.Series) > 0 {
		b.WriteString("| series | verdict | noise (p-p) | tolerance | growth | trend |\n|---|---|---|---|---|---|\n")
		for _, s := range rep.Series {
			noise, tol, growth := report.Judgement(s)
			verdict := s.Verdict.Outcome.String()
			if s.Verdict.Leak {
				verdict = "**leak**"
			}
			fmt.Fprintf(&b, "| `%s` | %s | %s | %s | %s | %s/h |\n", cell(s.Key), verdict, noise, tol, growth,
				detect.Format(s.SlopePerHour, s.Kind))
		}
	}
	if len(rep.Invariants) > 0 {
		b.WriteString("\n| invariant | held |\n|---|---|\n")
		for _, inv := range rep.Invariants {
			held := "✓ " + inv.Detail
			switch {
			case inv.Broken:
				held = "**✕ broken**: " + inv.Detail
			case !inv.Applies:
				held = "– not exposed"
			}
			fmt.Fprintf(&b, "| `%s` | %s |\n", cell(inv.Rule), cell(held))
		}
	}
	b.WriteString("\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// CompareMarkdown writes the summary of a comparison: the verdict, what
// differs between the soaks, and a table of every row with its shift and
// interval.
func CompareMarkdown(w io.Writer, r *compare.Result) error {
	icon := "✅"
	switch r.Status {
	case compare.StatusRegressed:
		icon = "❌"
	case compare.StatusError:
		icon = "⚠️"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "### %s Soak %s against baseline %s\n\n**%s**\n\n", icon, cell(r.Candidate.RunID),
		cell(r.Baseline.RunID), cell(r.Verdict))
	fmt.Fprintf(&b, "Baseline version %s, candidate version %s.", cell(r.Baseline.Version), cell(r.Candidate.Version))
	if len(r.Differences) > 0 {
		fmt.Fprintf(&b, " Unlike: %s.", cell(strings.Join(r.Differences, "; ")))
	}
	if len(r.Notes) > 0 {
		fmt.Fprintf(&b, " Differing: %s.", cell(strings.Join(r.Notes, "; ")))
	}
	b.WriteString("\n\n")
	if len(r.Rows) > 0 {
		fmt.Fprintf(&b, "| series | class | baseline | candidate | shift (%g%% CI) | tolerance | p |\n|---|---|---|---|---|---|---|\n",
			r.Level*100)
		for _, row := range r.Rows {
			class := string(row.Class)
			if row.Class == compare.Regressed {
				class = "**regressed**"
			}
			if row.Class == compare.NotComparable {
				fmt.Fprintf(&b, "| `%s` | %s | | | %s | | |\n", cell(row.Key), class, cell(row.Reason))
				continue
			}
			fmt.Fprintf(&b, "| `%s` | %s | %s | %s | %s | %s (%s) | %.2g |\n", cell(row.Key), class,
				row.Format(row.Baseline), row.Format(row.Candidate), cell(row.ShiftText(r.Level)),
				row.Format(row.Tolerance), row.ToleranceFrom, min(row.P, row.PLow))
		}
	}
	b.WriteString("\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// cell keeps a value from breaking a Markdown table.
func cell(s string) string { return strings.ReplaceAll(strings.ReplaceAll(s, "|", `\|`), "\n", " ") }

// AppendStepSummary appends md to the file named by $GITHUB_STEP_SUMMARY,
// when it is set (in a GitHub Actions job); otherwise it does nothing.
func AppendStepSummary(md string) error {
	path := os.Getenv(StepSummaryEnv)
	if path == "" {
		return nil
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("cannot append to $%s: %w", StepSummaryEnv, err)
	}
	if _, err := io.WriteString(f, md); err != nil {
		f.Close()
		return fmt.Errorf("cannot append to $%s: %w", StepSummaryEnv, err)
	}
	return f.Close()
}
