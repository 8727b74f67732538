package cli

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	junit "github.com/joshdk/go-junit"

	"github.com/sqlworker/worker/soak/internal/ciformat"
	"github.com/sqlworker/worker/soak/internal/standin"
)

// serveStandin serves the stand-in of p over HTTP, its clock 25 times the
// wall clock's: a quick soak (40 ms interval) sees one stand-in second per
// scrape.
func serveStandin(t *testing.T, p standin.Params) string {
	t.Helper()
	srv := httptest.NewServer(&standin.Server{Models: standin.Models(p), Speed: 25})
	t.Cleanup(srv.Close)
	return srv.URL + "/metrics"
}

// quietStandin is a stand-in with a unit of noise whose job runs cost
// 5 ms of CPU.
func quietStandin(seed uint64) standin.Params {
	return standin.Params{Noise: 1, MemNoise: 2 << 20, Seed: seed, CPUPerRun: 0.005, CPUJitter: 0.5}
}

// cmpQuick are flags for a soak of about 2.4 s: 50 judged samples, 10
// blocks, room to spare above compare.MinBlocks when a loaded machine
// drops a scrape or two.
var cmpQuick = []string{"--duration", "2400ms", "--interval", "40ms", "--warmup", "400ms"}

// compareCmd runs `soak compare` with args.
func compareCmd(args ...string) (stdout, stderr string, err error) {
	var out, errOut bytes.Buffer
	err = Run(context.Background(), append([]string{"compare"}, args...), &out, &errOut)
	return out.String(), errOut.String(), err
}

// Ensure soak compare flags a candidate holding 2 more connections (exit
// 1, the series, its shift and interval in the last line), passes a clean
// one (exit 0), refuses unlike soaks unless forced (exit 2) and writes the
// comparison's files; and that --baseline on a soak does the same.
func TestRun_Compare(t *testing.T) {
	_, stderr, base, err := soak(t, append(cmpQuick, "--target", serveStandin(t, quietStandin(1)))...)
	if err != nil {
		t.Fatalf("baseline: %v\n%s", err, stderr)
	}
	_, _, clean, err := soak(t, append(cmpQuick, "--target", serveStandin(t, quietStandin(2)))...)
	if err != nil {
		t.Fatalf("clean candidate: %v", err)
	}
	step := quietStandin(3)
	step.StepSeries, step.Step = "worker_db_connections_open", 2
	_, _, stepped, err := soak(t, append(cmpQuick, "--target", serveStandin(t, step))...)
	if err != nil {
		t.Fatalf("stepped candidate: %v (its own trend verdict must pass: a step is no trend)", err)
	}

	stdout, stderr, err := compareCmd(base, filepath.Join(stepped, "report.json"))
	if !errors.Is(err, ErrAlarm) {
		t.Fatalf("got %v, want ErrAlarm\n%s%s", err, stdout, stderr)
	}
	// Scrapes over HTTP fall at jittered moments of the stand-in's seconds,
	// so the shift is about 2, not exactly.
	want := regexp.MustCompile(`^soak: REGRESSED against baseline \S+: worker_db_connections_open \+(\d+(\.\d+)?) \(95% CI \+[\d.]+ to \+[\d.]+; tolerance 1\.5\)\.$`)
	m := want.FindStringSubmatch(lastLine(stdout))
	if m == nil {
		t.Fatalf("got last line %q, want it to match %s", lastLine(stdout), want)
	}
	if shift, _ := strconv.ParseFloat(m[1], 64); shift < 1.6 || shift > 2.4 {
		t.Errorf("got shift %g, want about 2", shift)
	}
	suites, err := junit.IngestFile(filepath.Join(stepped, ciformat.CompareJUnitFile))
	if err != nil || len(suites) != 1 || suites[0].Totals.Failed != 1 {
		t.Errorf("compare-junit.xml: got %v, %+v; want one failed case", err, suites)
	}

	if stdout, stderr, err = compareCmd(base, clean); err != nil {
		t.Errorf("clean: got %v, want nil\n%s%s", err, stdout, stderr)
	} else if got := lastLine(stdout); !strings.HasPrefix(got, "soak: NO REGRESSION against baseline ") {
		t.Errorf("clean: got %q", got)
	}

	_, _, short, err := soak(t, "--duration", "2800ms", "--interval", "40ms", "--warmup", "400ms", "--target", serveStandin(t, quietStandin(4)))
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = compareCmd(base, short)
	if err == nil || errors.Is(err, ErrAlarm) || !strings.Contains(err.Error(), "unlike soaks: duration 2.4s against 2.8s") {
		t.Errorf("unlike: got %v, want could not compare naming the duration", err)
	}
	if _, _, err = compareCmd("--force", "--report-dir", "", base, short); err != nil && !errors.Is(err, ErrAlarm) {
		t.Errorf("forced: got %v, want a comparison", err)
	}

	stdout, _, _, err = soak(t, append(cmpQuick, "--baseline", base, "--target", serveStandin(t, step))...)
	if !errors.Is(err, ErrAlarm) || !strings.Contains(lastLine(stdout), "REGRESSED against baseline ") || !strings.Contains(lastLine(stdout), " worker_db_connections_open +") {
		t.Errorf("--baseline: got %v, last line %q; want the regression", err, lastLine(stdout))
	}
}

// Ensure every soak writes junit.xml and summary.md beside its report.
func TestRun_CIFormats(t *testing.T) {
	_, _, dir, err := soak(t, append(quick, "--target", serve(t, genericGo(true)))...)
	if !errors.Is(err, ErrAlarm) {
		t.Fatalf("got %v, want ErrAlarm", err)
	}
	rep := readReport(t, dir)
	suites, err := junit.IngestFile(filepath.Join(dir, ciformat.JUnitFile))
	if err != nil || len(suites) != 1 {
		t.Fatalf("junit.xml: %v, %d suites", err, len(suites))
	}
	for _, tc := range suites[0].Tests {
		if tc.Name == "process_open_fds" && (tc.Status != junit.StatusFailed || tc.Message != rep.Verdict) {
			t.Errorf("got %s %q, want failed with %q", tc.Status, tc.Message, rep.Verdict)
		}
	}
	md, err := os.ReadFile(filepath.Join(dir, ciformat.MarkdownFile))
	if err != nil || !strings.Contains(string(md), rep.Verdict) {
		t.Errorf("summary.md: %v, want the verdict in:\n%s", err, md)
	}
}

// Ensure a soak that could not be done still writes its JUnit file, with
// one case in error saying why.
func TestRun_CIFormatsCouldNotSoak(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + l.Addr().String() + "/metrics"
	l.Close() // nothing answers there now
	_, _, dir, err := soak(t, append(quick, "--target", url)...)
	if err == nil || errors.Is(err, ErrAlarm) {
		t.Fatalf("got %v, want could not soak", err)
	}
	suites, err := junit.IngestFile(filepath.Join(dir, ciformat.JUnitFile))
	if err != nil || len(suites) != 1 || suites[0].Totals.Error != 1 {
		t.Fatalf("junit.xml: got %v, %+v; want one case in error", err, suites)
	}
	if got := suites[0].Tests[0]; got.Name != "soak" || !strings.HasPrefix(got.Message, "could not soak: ") {
		t.Errorf("got %s %q, want soak: could not soak: …", got.Name, got.Message)
	}
}

// Ensure bad compare arguments are one-line errors naming what is wrong.
func TestRun_CompareBadArgs(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "bad usage: compare: required argument 'baseline' not provided"},
		{[]string{dir}, "bad usage: compare: required argument 'candidate' not provided"},
		{[]string{filepath.Join(dir, "nope"), dir}, "could not compare: baseline " + filepath.Join(dir, "nope") + ": "},
		{[]string{dir, dir}, "could not compare: baseline " + dir + ": cannot load report: "},
	} {
		_, _, err := compareCmd(tc.args...)
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: got %v, want one line starting %q", tc.args, err, tc.want)
		}
	}
	_, _, _, err := soak(t, append(quick, "--baseline", filepath.Join(dir, "nope"), "--target", "http://127.0.0.1:1/metrics")...)
	if err == nil || !strings.Contains(err.Error(), "--baseline: ") {
		t.Errorf("got %v, want a --baseline error", err)
	}
}
