package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/alecthomas/kingpin/v2"

	"github.com/sqlworker/worker/soak/internal/ciformat"
	"github.com/sqlworker/worker/soak/internal/compare"
	"github.com/sqlworker/worker/soak/internal/report"
)

// compareCommand is the first argument of `soak compare BASELINE CANDIDATE`.
const compareCommand = "compare"

// compareOptions are the parsed command line of `soak compare`.
type compareOptions struct {
	baseline, candidate string
	reportDir           string
	reportDirSet        bool
	force               bool
}

// parseCompareArgs parses the arguments after "compare".
func parseCompareArgs(args []string, stdout io.Writer) (*compareOptions, error) {
	o := &compareOptions{}
	app := kingpin.New("soak compare", "Compare a soak (CANDIDATE) with an earlier one (BASELINE): per watched series and for the CPU seconds per job run, a rank test on block means, the Hodges–Lehmann shift with its 95% interval, and a class: regressed, improved, unchanged or not comparable.\n\n"+
		"  soak compare [flags] BASELINE CANDIDATE   each a report directory or its report.json\n\n"+
		"Exit status: 0 nothing regressed, 1 regressed, 2 could not compare (unreadable or unlike soaks).")
	help := false
	app.Terminate(func(int) { help = true })
	app.UsageWriter(stdout)
	app.ErrorWriter(io.Discard)
	app.HelpFlag.Short('h')
	app.Flag("report-dir", "Where compare.json, compare-junit.xml and compare.md go; default the candidate's report directory, empty for none.").
		IsSetByUser(&o.reportDirSet).StringVar(&o.reportDir)
	app.Flag("force", "Compare soaks that are unlike (other duration, config, machine…), saying what differs.").BoolVar(&o.force)
	app.Arg("baseline", "The baseline's report directory or report.json.").Required().StringVar(&o.baseline)
	app.Arg("candidate", "The candidate's report directory or report.json.").Required().StringVar(&o.candidate)
	if _, err := app.Parse(args); err != nil {
		if help {
			return nil, errHelp
		}
		return nil, fmt.Errorf("%w: compare: %v", ErrUsage, err)
	}
	if help {
		return nil, errHelp
	}
	if !o.reportDirSet {
		o.reportDir = reportDirOf(o.candidate)
	}
	return o, nil
}

// reportDirOf returns the directory of a report given as a directory or as
// its report.json.
func reportDirOf(path string) string {
	if filepath.Base(path) == report.JSONFile {
		return filepath.Dir(path)
	}
	return path
}

// loadReport reads a report given as a directory or as its report.json;
// what names the side in errors.
func loadReport(what, path string) (*report.Report, error) {
	if fi, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("could not compare: %s %s: %w", what, path, err)
	} else if !fi.IsDir() && filepath.Base(path) != report.JSONFile {
		return nil, fmt.Errorf("could not compare: %s %s: want a report directory or its %s", what, path, report.JSONFile)
	}
	rep, err := report.Load(reportDirOf(path))
	if err != nil {
		return nil, fmt.Errorf("could not compare: %s %s: %w", what, path, err)
	}
	return rep, nil
}

// runCompare is `soak compare`.
func runCompare(args []string, stdout, stderr io.Writer) error {
	o, err := parseCompareArgs(args, stdout)
	switch {
	case errors.Is(err, errHelp):
		return nil
	case err != nil:
		return err
	}
	base, err := loadReport("baseline", o.baseline)
	if err != nil {
		return err
	}
	cand, err := loadReport("candidate", o.candidate)
	if err != nil {
		return err
	}
	return judgeAgainst(base, o.baseline, cand, compare.Options{Force: o.force}, o.reportDir, stdout, stderr)
}

// judgeAgainst compares cand with base (read from basePath), writes the
// comparison's files into dir (none when empty), prints its table and
// verdict, and returns nil, an error wrapping ErrAlarm when something
// regressed, or the reason it could not compare.
func judgeAgainst(base *report.Report, basePath string, cand *report.Report, opt compare.Options, dir string, stdout, stderr io.Writer) error {
	r := compare.Compare(base, cand, opt)
	r.Baseline.Source = basePath
	if dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			fmt.Fprintf(stderr, "soak: cannot create --report-dir: %v\n", err)
		} else if err := ciformat.WriteCompare(dir, r); err != nil {
			fmt.Fprintf(stderr, "soak: %v\n", err)
		} else {
			fmt.Fprintf(stderr, "soak: comparison in %s\n", filepath.Join(dir, ciformat.CompareMarkdownFile))
		}
	}
	for _, n := range r.Notes {
		fmt.Fprintf(stderr, "soak: compare: %s\n", n)
	}
	printCompare(stdout, r)
	switch r.Status {
	case compare.StatusRegressed:
		fmt.Fprintln(stdout, "soak: "+r.Verdict)
		names := make([]string, 0, len(r.Regressions()))
		for _, row := range r.Regressions() {
			names = append(names, row.Key)
		}
		return fmt.Errorf("%w: regressed: %s", ErrAlarm, strings.Join(names, ", "))
	case compare.StatusError:
		return errors.New(r.Verdict)
	}
	fmt.Fprintln(stdout, "soak: "+r.Verdict)
	return nil
}

// printCompare writes one line per row: class, levels, shift with its
// interval, tolerance.
func printCompare(w io.Writer, r *compare.Result) {
	if len(r.Rows) == 0 {
		return
	}
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "compared\tclass\tbaseline\tcandidate\tshift (%g%% CI)\ttolerance\tp\n", r.Level*100)
	for _, row := range r.Rows {
		if row.Class == compare.NotComparable {
			fmt.Fprintf(tw, "%s\t%s\t\t\t%s\t\t\n", row.Key, row.Class, row.Reason)
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s (%s to %s)\t%s (%s)\t%.2g\n", row.Key, row.Class, row.Format(row.Baseline),
			row.Format(row.Candidate), row.Signed(row.Shift), row.Signed(row.Low), row.Signed(row.High),
			row.Format(row.Tolerance), row.ToleranceFrom, min(row.P, row.PLow))
	}
	_ = tw.Flush()
	for _, l := range strings.Split(strings.TrimRight(b.String(), "\n"), "\n") {
		fmt.Fprintln(w, "soak: "+l)
	}
}

// againstBaseline compares the soak just reported with --baseline, after
// its own verdict: soakErr is what the soak returned. A soak that could not
// be done is not compared; a leak stays the alarm whatever the comparison
// says.
func (s *session) againstBaseline(soakErr error, stdout io.Writer) error {
	if s.rep == nil || (soakErr != nil && !errors.Is(soakErr, ErrAlarm)) {
		return soakErr
	}
	base, err := loadReport("baseline", s.o.baseline)
	if err != nil {
		fmt.Fprintf(s.stderr, "soak: %v\n", err)
		if soakErr != nil {
			return soakErr
		}
		return err
	}
	cmpErr := judgeAgainst(base, s.o.baseline, s.rep, compare.Options{Force: s.o.baselineForce}, s.o.reportDir, stdout, s.stderr)
	if soakErr != nil {
		return soakErr
	}
	return cmpErr
}
