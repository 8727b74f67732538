// Package ciformat writes what a soak or a comparison found in the formats
// CI systems read: JUnit XML (one test case per watched series and per
// invariant, or per compared series; Jenkins' and Ant's dialect, which
// GitHub, GitLab and Jenkins show as tests) and Markdown fit for GitHub
// Actions' job summary ($GITHUB_STEP_SUMMARY).
package ciformat

import (
	"encoding/xml"
	"fmt"
	"io"
	"strings"

	"github.com/sqlworker/worker/soak/internal/compare"
	"github.com/sqlworker/worker/soak/internal/report"
	"github.com/sqlworker/worker/soak/internal/runner"
)

// File names written into the report directory.
const (
	JUnitFile           = "junit.xml"
	MarkdownFile        = "summary.md"
	CompareJSONFile     = "compare.json"
	CompareJUnitFile    = "compare-junit.xml"
	CompareMarkdownFile = "compare.md"
)

// StepSummaryEnv names the file GitHub Actions shows as the job summary.
const StepSummaryEnv = "GITHUB_STEP_SUMMARY"

// Suites is a JUnit document.
type Suites struct {
	XMLName  xml.Name `xml:"testsuites"`
	Name     string   `xml:"name,attr"`
	Tests    int      `xml:"tests,attr"`
	Failures int      `xml:"failures,attr"`
	Errors   int      `xml:"errors,attr"`
	Skipped  int      `xml:"skipped,attr"`
	Time     float64  `xml:"time,attr"`
	Suites   []Suite  `xml:"testsuite"`
}

// Suite is one testsuite.
type Suite struct {
	Name       string     `xml:"name,attr"`
	Tests      int        `xml:"tests,attr"`
	Failures   int        `xml:"failures,attr"`
	Errors     int        `xml:"errors,attr"`
	Skipped    int        `xml:"skipped,attr"`
	Time       float64    `xml:"time,attr"`
	Timestamp  string     `xml:"timestamp,attr,omitempty"`
	Properties []Property `xml:"properties>property,omitempty"`
	Cases      []Case     `xml:"testcase"`
}

// Property is a name and value of a suite.
type Property struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
}

// Case is one testcase: passed unless it has a Failure, an Error or Skipped.
type Case struct {
	Name      string   `xml:"name,attr"`
	Classname string   `xml:"classname,attr"`
	Time      float64  `xml:"time,attr"`
	Failure   *Message `xml:"failure,omitempty"`
	Error     *Message `xml:"error,omitempty"`
	Skipped   *Message `xml:"skipped,omitempty"`
	SystemOut string   `xml:"system-out,omitempty"`
}

// Message is the body of a failure, error or skip: the message attribute
// is what CI shows in one line, the text the detail.
type Message struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr,omitempty"`
	Text    string `xml:",chardata"`
}

// add appends c to s, counting it.
func (s *Suite) add(c Case) {
	s.Tests++
	switch {
	case c.Failure != nil:
		s.Failures++
	case c.Error != nil:
		s.Errors++
	case c.Skipped != nil:
		s.Skipped++
	}
	s.Cases = append(s.Cases, c)
}

// document wraps one suite.
func document(s Suite) *Suites {
	return &Suites{Name: s.Name, Tests: s.Tests, Failures: s.Failures, Errors: s.Errors, Skipped: s.Skipped,
		Time: s.Time, Suites: []Suite{s}}
}

// Write writes the document as XML.
func (d *Suites) Write(w io.Writer) error {
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", " ")
	if err := enc.Encode(d); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\n")
	return err
}

// SoakJUnit returns the JUnit document of a soak: one case per watched
// series (failed when it leaks, skipped when too short or too noisy to
// decide) and one per invariant (failed when broken, skipped when the
// target does not expose its metrics). A failure's message is the soak's
// verdict line, as report.json has it; its text is the series' own reason.
// A soak that could not be done is one case in error.
func SoakJUnit(rep *report.Report) *Suites {
	s := Suite{Name: "soak", Time: rep.Elapsed, Timestamp: rep.Started.Format("2006-01-02T15:04:05"),
		Properties: []Property{{"run_id", rep.RunID}, {"target", rep.Target}, {"verdict", rep.Verdict}}}
	if rep.Status == runner.StatusError {
		msg := rep.Verdict
		if rep.Error != "" {
			msg = "could not soak: " + rep.Error
		}
		s.add(Case{Name: "soak", Classname: "soak", Time: rep.Elapsed, Error: &Message{Message: msg, Type: "could not soak"}})
	}
	for _, sr := range rep.Series {
		c := Case{Name: sr.Key, Classname: "soak.series", Time: rep.Elapsed}
		v := sr.Verdict
		noise, tol, growth := report.Judgement(sr)
		detail := fmt.Sprintf("%s: %s (noise %s, tolerance %s, growth %s, %d samples)", v.Outcome, v.Reason, noise, tol, growth, v.N)
		switch {
		case v.Leak:
			c.Failure = &Message{Message: rep.Verdict, Type: "leak", Text: detail}
		case !v.Outcome.Decided():
			c.Skipped = &Message{Message: v.Outcome.String() + ": " + v.Reason}
		default:
			c.SystemOut = detail
		}
		s.add(c)
	}
	for _, inv := range rep.Invariants {
		name := inv.Rule
		if inv.Replica != "" {
			name += " (replica " + inv.Replica + ")"
		}
		c := Case{Name: name, Classname: "soak.invariant", Time: rep.Elapsed}
		switch {
		case inv.Broken:
			c.Failure = &Message{Message: rep.Verdict, Type: "invariant broken", Text: inv.Detail}
		case !inv.Applies:
			c.Skipped = &Message{Message: "not exposed: " + inv.Text}
		default:
			c.SystemOut = inv.Text + ": " + inv.Detail
		}
		s.add(c)
	}
	return document(s)
}

// CompareJUnit returns the JUnit document of a comparison: a case for the
// likeness of the two soaks (an error when they are unlike and not forced),
// and one per compared series and for the cost per job run (failed when it
// regressed, skipped when not comparable). A failure's message is the
// comparison's verdict line; its text the row's reason.
func CompareJUnit(r *compare.Result) *Suites {
	s := Suite{Name: "soak-compare", Properties: []Property{{"baseline", r.Baseline.RunID},
		{"candidate", r.Candidate.RunID}, {"verdict", r.Verdict}}}
	like := Case{Name: "like with like", Classname: "soak.compare"}
	switch {
	case len(r.Differences) > 0 && !r.Forced:
		like.Error = &Message{Message: r.Verdict, Type: "unlike soaks"}
	case len(r.Differences) > 0:
		like.SystemOut = "unlike, compared with --force: " + strings.Join(r.Differences, "; ")
	case len(r.Notes) > 0:
		like.SystemOut = "alike; differing: " + strings.Join(r.Notes, "; ")
	default:
		like.SystemOut = "alike"
	}
	s.add(like)
	for _, row := range r.Rows {
		c := Case{Name: row.Key, Classname: "soak.compare.series"}
		switch row.Class {
		case compare.Regressed:
			c.Failure = &Message{Message: r.Verdict, Type: "regressed", Text: row.Reason}
		case compare.NotComparable:
			c.Skipped = &Message{Message: "not comparable: " + row.Reason}
		default:
			c.SystemOut = string(row.Class) + ": " + row.Reason
		}
		s.add(c)
	}
	return document(s)
}

// WriteFile writes the document to path.
func (d *Suites) WriteFile(path string) error { return report.WriteFile(path, d.Write) }
