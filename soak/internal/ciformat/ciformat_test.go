package ciformat_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	junit "github.com/joshdk/go-junit"
	"go.uber.org/goleak"

	"github.com/sqlworker/worker/soak/internal/ciformat"
	"github.com/sqlworker/worker/soak/internal/compare"
	"github.com/sqlworker/worker/soak/internal/report"
	"github.com/sqlworker/worker/soak/internal/standin"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// soak replays a 60 s soak of the stand-in with p.
func soak(t *testing.T, p standin.Params, id string) *report.Report {
	t.Helper()
	res, err := standin.Replay(standin.Models(p), 60*time.Second, 15*time.Second, false)
	if err != nil {
		t.Fatal(err)
	}
	return report.New(res, report.Meta{RunID: id})
}

// ingest writes the document and reads it back with joshdk/go-junit, a
// JUnit parser of its own, not ours.
func ingest(t *testing.T, d *ciformat.Suites) junit.Suite {
	t.Helper()
	path := filepath.Join(t.TempDir(), "junit.xml")
	if err := d.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	suites, err := junit.IngestFile(path)
	if err != nil {
		t.Fatalf("go-junit cannot read %s: %v", path, err)
	}
	if len(suites) != 1 {
		t.Fatalf("got %d suites, want 1", len(suites))
	}
	return suites[0]
}

func byName(s junit.Suite) map[string]junit.Test {
	m := map[string]junit.Test{}
	for _, tc := range s.Tests {
		m[tc.Name] = tc
	}
	return m
}

// Ensure a leaking soak's JUnit file has one case per series and per
// invariant, the leaking series failed with the verdict line as message,
// the rest passed.
func TestSoakJUnit_Leak(t *testing.T) {
	rep := soak(t, standin.Params{LeakSeries: "process_open_fds", Leak: 0.2, MemNoise: 2 << 20, Seed: 1}, "leaky")
	s := ingest(t, ciformat.SoakJUnit(rep))
	if got, want := len(s.Tests), len(rep.Series)+len(rep.Invariants); got != want {
		t.Fatalf("got %d test cases, want %d (series and invariants)", got, want)
	}
	tests := byName(s)
	fds := tests["process_open_fds"]
	if fds.Status != junit.StatusFailed || fds.Message != rep.Verdict || !strings.HasPrefix(rep.Verdict, "LEAK after") {
		t.Errorf("got process_open_fds %s %q, want failed with the verdict %q", fds.Status, fds.Message, rep.Verdict)
	}
	body := ""
	if e, ok := fds.Error.(junit.Error); ok {
		body = e.Body
	}
	if fds.Classname != "soak.series" || !strings.HasPrefix(body, "leak: ") {
		t.Errorf("got classname %q, body %q; want soak.series and the series' reason", fds.Classname, body)
	}
	if g := tests["go_goroutines"]; g.Status != junit.StatusPassed {
		t.Errorf("got go_goroutines %s, want passed", g.Status)
	}
	if s.Totals.Failed != 1 || s.Totals.Error != 0 {
		t.Errorf("got %d failed, %d errors; want 1, 0", s.Totals.Failed, s.Totals.Error)
	}
	if s.Properties["verdict"] != rep.Verdict || s.Properties["run_id"] != "leaky" {
		t.Errorf("got properties %v", s.Properties)
	}
}

// Ensure the failure message carries the leak's origin when the soak names
// one: it is the verdict line, origin included.
func TestSoakJUnit_Origin(t *testing.T) {
	res, err := standin.Replay(standin.Models(standin.Params{LeakSeries: "process_open_fds", Leak: 0.2, MemNoise: 2 << 20, Seed: 1}),
		60*time.Second, 15*time.Second, false)
	if err != nil {
		t.Fatal(err)
	}
	res.Culprits = map[string]string{"process_open_fds": "from leak.Open (leak/leak.go:12)"}
	rep := report.New(res, report.Meta{RunID: "origin"})
	fds := byName(ingest(t, ciformat.SoakJUnit(rep)))["process_open_fds"]
	if want := "process_open_fds rising +720/h from leak.Open (leak/leak.go:12)."; fds.Status != junit.StatusFailed || !strings.HasSuffix(fds.Message, want) {
		t.Errorf("got %s %q, want failed ending %q", fds.Status, fds.Message, want)
	}
}

// Ensure a steady soak passes every case that applies and skips the
// invariants the stand-in does not expose.
func TestSoakJUnit_Steady(t *testing.T) {
	rep := soak(t, standin.Params{Noise: 1, MemNoise: 2 << 20, Seed: 2}, "steady")
	s := ingest(t, ciformat.SoakJUnit(rep))
	if s.Totals.Failed != 0 || s.Totals.Error != 0 || s.Totals.Passed == 0 {
		t.Errorf("got %+v, want passes only", s.Totals)
	}
	for _, tc := range s.Tests {
		if tc.Classname == "soak.invariant" && tc.Status == junit.StatusSkipped && !strings.HasPrefix(tc.Message, "not exposed: ") {
			t.Errorf("got skipped %s %q, want 'not exposed: …'", tc.Name, tc.Message)
		}
	}
}

// Ensure a comparison's JUnit file fails the regressed series with the
// comparison's verdict line, and an unlike comparison is an error.
func TestCompareJUnit(t *testing.T) {
	base := soak(t, standin.Params{Noise: 1, MemNoise: 2 << 20, Seed: 3}, "base")
	cand := soak(t, standin.Params{Noise: 1, MemNoise: 2 << 20, Seed: 4, StepSeries: "worker_db_connections_open", Step: 2}, "cand")
	r := compare.Compare(base, cand, compare.Options{})
	s := ingest(t, ciformat.CompareJUnit(r))
	tests := byName(s)
	got := tests["worker_db_connections_open"]
	if got.Status != junit.StatusFailed || got.Message != r.Verdict || !strings.HasPrefix(got.Message, "REGRESSED") {
		t.Errorf("got %s %q, want failed with %q", got.Status, got.Message, r.Verdict)
	}
	if like := tests["like with like"]; like.Status != junit.StatusPassed {
		t.Errorf("got like with like %s, want passed", like.Status)
	}
	if s.Totals.Failed != 1 || s.Totals.Tests != len(r.Rows)+1 {
		t.Errorf("got %+v, want 1 failed of %d", s.Totals, len(r.Rows)+1)
	}

	cand.Like.Duration = 600
	r = compare.Compare(base, cand, compare.Options{})
	s = ingest(t, ciformat.CompareJUnit(r))
	if like := byName(s)["like with like"]; like.Status != junit.StatusError || !strings.Contains(like.Message, "duration 60s against 600s") {
		t.Errorf("got %s %q, want an error naming the duration", like.Status, like.Message)
	}
}

// Ensure the Markdown summaries carry the verdict and a row per series,
// and are appended to $GITHUB_STEP_SUMMARY when it is set.
func TestWrite_StepSummary(t *testing.T) {
	dir := t.TempDir()
	summary := filepath.Join(dir, "step-summary.md")
	t.Setenv(ciformat.StepSummaryEnv, summary)
	base := soak(t, standin.Params{Noise: 1, MemNoise: 2 << 20, Seed: 5}, "base")
	cand := soak(t, standin.Params{Noise: 1, MemNoise: 2 << 20, Seed: 6, StepSeries: "process_open_fds", Step: 3}, "cand")
	if err := ciformat.WriteSoak(dir, cand); err != nil {
		t.Fatal(err)
	}
	r := compare.Compare(base, cand, compare.Options{})
	if err := ciformat.WriteCompare(dir, r); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(summary)
	if err != nil {
		t.Fatal(err)
	}
	got := string(b)
	for _, want := range []string{
		"### ✅ Soak cand\n\n**" + cand.Verdict + "**",
		"| `process_open_fds` | steady |",
		"### ❌ Soak cand against baseline base",
		"| `process_open_fds` | **regressed** | ",
		"| +3 (95% CI +",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("step summary lacks %q:\n%s", want, got)
		}
	}
	for _, f := range []string{ciformat.JUnitFile, ciformat.MarkdownFile, ciformat.CompareJSONFile, ciformat.CompareJUnitFile, ciformat.CompareMarkdownFile} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("not written: %v", err)
		}
	}
}
