package main_test

import (
	"bufio"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/sqlworker/worker/internal/workertest"
)

var update = flag.Bool("update", false, "rewrite testdata/metrics.golden from the worker's /metrics")

// goldenConfig is the fixed worker the golden exposition is taken from:
// no built-in job and one SQL job that does not run during the test, so
// that every series there is is there from start-up.
var goldenConfig = workertest.BuiltinsOff + `
jobs:
  - name: rollup
    schedule: "@yearly"
    sql: SELECT 1
`

// sampleRE splits a sample line into the series (name and labels) and the
// value with an optional timestamp.
var sampleRE = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{.*\})?) \S+( \S+)?$`)

// buildInfoRE matches the label values of worker_build_info, which say
// which build this is.
var buildInfoRE = regexp.MustCompile(`="[^"]*"`)

// exposition reduces /metrics text to what the golden file pins. The rule:
//   - every family's # HELP and # TYPE lines are kept, as they are;
//   - the samples of go_* (but go_sql_*, the worker's pool) and process_*
//     families are dropped: their set and values are the Go runtime's and
//     the machine's;
//   - every other sample is kept as its series, the name and the label
//     set, with its value and timestamp dropped (counts, durations, sizes,
//     times and FD counts vary from run to run);
//   - worker_build_info's label values are replaced by "-".
func exposition(text string) string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") || line == "" {
			out = append(out, line)
			continue
		}
		if (strings.HasPrefix(line, "go_") && !strings.HasPrefix(line, "go_sql_")) || strings.HasPrefix(line, "process_") {
			continue
		}
		m := sampleRE.FindStringSubmatch(line)
		if m == nil {
			out = append(out, "unparsed: "+line)
			continue
		}
		series := m[1]
		if strings.HasPrefix(series, "worker_build_info{") {
			series = buildInfoRE.ReplaceAllString(series, `="-"`)
		}
		out = append(out, series)
	}
	return strings.Join(out, "\n") + "\n"
}

// Ensure the whole /metrics of a worker with fixed jobs, help texts, types
// and label sets, is what testdata/metrics.golden says (go test -update
// rewrites it). See exposition for what is left out.
func TestMetrics_Golden(t *testing.T) {
	w := MustStartWorker(t, goldenConfig)
	code, body, err := w.Get("/metrics")
	if err != nil || code != 200 {
		t.Fatalf("GET /metrics: got %v %v, want 200", code, err)
	}
	got := exposition(body)
	path := filepath.Join("testdata", "metrics.golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Fatalf("/metrics differs from %s (go test -run TestMetrics_Golden -update rewrites it):\n%s", path, diff(string(want), got))
	}
}

// diff returns the lines only in want (-) and only in got (+).
func diff(want, got string) string {
	in := func(s string) map[string]bool {
		m := make(map[string]bool)
		for _, l := range strings.Split(s, "\n") {
			m[l] = true
		}
		return m
	}
	w, g := in(want), in(got)
	var b strings.Builder
	for _, l := range strings.Split(want, "\n") {
		if !g[l] {
			b.WriteString("- " + l + "\n")
		}
	}
	for _, l := range strings.Split(got, "\n") {
		if !w[l] {
			b.WriteString("+ " + l + "\n")
		}
	}
	return b.String()
}
