package report_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"go.uber.org/goleak"

	"github.com/sqlworker/worker/soak/internal/detect"
	"github.com/sqlworker/worker/soak/internal/origin"
	"github.com/sqlworker/worker/soak/internal/report"
	"github.com/sqlworker/worker/soak/internal/runner"
	"github.com/sqlworker/worker/soak/internal/scrape"
	"github.com/sqlworker/worker/soak/internal/series"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type fake struct{ n int }

// Scrape returns a leaking FD count, a steady heap and one handle too many.
func (f *fake) Scrape(context.Context) (model.Vector, error) {
	f.n++
	return scrape.Parse(strings.NewReader(fmt.Sprintf(`process_open_fds %d
go_memstats_heap_inuse_bytes %d
worker_db_handles_open 2
`, 10+f.n, 4<<20+(f.n%5)<<16)))
}

func result(t *testing.T) *runner.Result {
	t.Helper()
	res, err := runner.New(runner.Config{
		Scraper: &fake{}, Duration: 600 * time.Millisecond, Interval: 10 * time.Millisecond,
		Warmup: 100 * time.Millisecond, Watch: series.DefaultWatch,
	}).Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// Ensure the three files are written, agree with each other and mark the
// leak and the broken invariant.
func TestReport_Write(t *testing.T) {
	rep := report.New(result(t), report.Meta{RunID: "run-1", Target: "http://127.0.0.1:1/metrics"})
	dir := filepath.Join(t.TempDir(), "out")
	if err := rep.Write(dir); err != nil {
		t.Fatalf("got %v, want nil", err)
	}

	var got report.Report
	b, err := os.ReadFile(filepath.Join(dir, report.JSONFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if got.Status != runner.StatusLeak || got.RunID != "run-1" {
		t.Fatalf("status %q run %q, want leak run-1", got.Status, got.RunID)
	}
	if want := "process_open_fds,worker_db_handles_open"; strings.Join(got.Named, ",") != want {
		t.Fatalf("named %v, want %s", got.Named, want)
	}
	if got, want := len(got.Series[0].Samples), got.Scrapes; got != want {
		t.Fatalf("%d samples, want %d", got, want)
	}

	csv, err := os.ReadFile(filepath.Join(dir, report.CSVFile))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.SplitN(string(csv), "\n", 2)[0], "t_seconds,phase,process_open_fds,worker_db_handles_open,go_memstats_heap_inuse_bytes"; got != want {
		t.Fatalf("csv header %q, want %q", got, want)
	}

	page, err := os.ReadFile(filepath.Join(dir, report.HTMLFile))
	if err != nil {
		t.Fatal(err)
	}
	html := string(page)
	for _, want := range []string{`class="hero leak"`, `class="card leak" id="s-process-open-fds"`, `class="rule bad"`, "limit 1", "warm-up"} {
		if !strings.Contains(html, want) {
			t.Fatalf("report.html lacks %q", want)
		}
	}
	if got, want := strings.Count(html, "<article class=\"card"), 3; got != want {
		t.Fatalf("%d charts, want %d", got, want)
	}
}

// Ensure text from the target is escaped in the page.
func TestReport_WriteHTMLEscapes(t *testing.T) {
	rep := report.New(result(t), report.Meta{RunID: `<script>alert(1)</script>`, Target: "http://x/<b>"})
	var buf bytes.Buffer
	if err := rep.WriteHTML(&buf); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(buf.String(), "<script>alert") || strings.Contains(buf.String(), "x/<b>") {
		t.Fatal("report.html contains unescaped markup from its input")
	}
}

// Ensure every series shows, in report.json, report.html and summary.txt,
// the noise measured, the tolerance that follows, the growth seen and the
// verdict, so that a failed soak says why.
func TestReport_PerSeriesJudgement(t *testing.T) {
	rep := report.New(result(t), report.Meta{RunID: "run-2"})
	dir := t.TempDir()
	if err := rep.Write(dir); err != nil {
		t.Fatalf("got %v, want nil", err)
	}
	loaded, err := report.Load(dir)
	if err != nil {
		t.Fatalf("got %v, want nil", err)
	}
	for _, s := range loaded.Series {
		v := s.Verdict
		if v.AllowedFrom == "" || v.Allowed <= 0 {
			t.Errorf("%s: allowed %g from %q, want a tolerance and its origin", s.Key, v.Allowed, v.AllowedFrom)
		}
		if got, want := v.Leak, v.Outcome == detect.Leaking; got != want {
			t.Errorf("%s: leak %v with outcome %v, want them to agree", s.Key, got, v.Outcome)
		}
	}
	fds := loaded.Series[0]
	if got, want := fds.Verdict.Outcome, detect.Leaking; fds.Key != "process_open_fds" || got != want {
		t.Fatalf("%s: got %v, want %v", fds.Key, got, want)
	}

	txt, err := os.ReadFile(filepath.Join(dir, report.TextFile))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(txt)), "\n")
	if got, want := len(lines), 1+len(loaded.Series)+1; got != want {
		t.Fatalf("summary.txt has %d lines, want %d:\n%s", got, want, txt)
	}
	noise, tol, growth := report.Judgement(fds)
	for _, want := range []string{"process_open_fds", "leak", noise, tol, growth} {
		if !strings.Contains(lines[1], want) {
			t.Fatalf("summary line %q lacks %q", lines[1], want)
		}
	}
	if got, want := lines[len(lines)-1], loaded.Verdict; got != want {
		t.Fatalf("last line %q, want the verdict %q", got, want)
	}

	page, err := os.ReadFile(filepath.Join(dir, report.HTMLFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Noise (p-p)", "Growth", tol, "1.5 × that noise"} {
		if !strings.Contains(string(page), want) {
			t.Fatalf("report.html lacks %q", want)
		}
	}

	// --render draws the same page again from report.json.
	var again bytes.Buffer
	if err := loaded.WriteHTML(&again); err != nil {
		t.Fatal(err)
	}
	if got, want := again.String(), string(page); got != want {
		t.Fatal("the page drawn from the loaded report.json differs from the one written")
	}
}

// Ensure the origins of a leak are listed in summary.txt and report.html
// with their growth, the command that diffs their profiles and their
// notes, survive report.json, and that a soak without them says why.
func TestReport_Origins(t *testing.T) {
	res := result(t)
	f := origin.Finding{Series: "process_open_fds", Profile: origin.Conns, Unit: "count", Measure: "growth",
		Base: origin.PhaseWarmup, BaseAt: 0.1, EndAt: 0.6, BaseFile: "profiles/sqlcount.conns.base.pb.gz",
		EndFile: "profiles/sqlcount.conns.end.pb.gz", Explains: true, Note: "fds follow connections",
		Sites: []origin.Site{{Function: "example.com/app.initDb", File: "/src/app/db.go", Line: 42, Growth: 17, Open: 18,
			Callers: []string{"example.com/app.handler /src/app/http.go:9"}}}}
	rep := report.New(res, report.Meta{RunID: "run-1", Origins: &origin.Result{Findings: []origin.Finding{f}}})
	dir := t.TempDir()
	if err := rep.Write(dir); err != nil {
		t.Fatal(err)
	}
	txt := readFile(t, filepath.Join(dir, report.TextFile))
	for _, want := range []string{
		"origin of process_open_fds: profile sqlcount.conns, growth from warm-up (0s) to the end (1s); go tool pprof -base profiles/sqlcount.conns.base.pb.gz profiles/sqlcount.conns.end.pb.gz\n",
		"+17  example.com/app.initDb  /src/app/db.go:42\n",
		"called from example.com/app.handler /src/app/http.go:9\n",
		"note: fds follow connections\n",
	} {
		if !strings.Contains(txt, want) {
			t.Errorf("summary.txt lacks %q:\n%s", want, txt)
		}
	}
	page := readFile(t, filepath.Join(dir, report.HTMLFile))
	if !strings.Contains(page, "Where it leaks") || !strings.Contains(page, "example.com/app.initDb") || !strings.Contains(page, "/src/app/db.go:42") {
		t.Error("report.html does not list the origin")
	}
	loaded, err := report.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := loaded.Origins.Findings[0].Sites[0]; got.Line != 42 || got.Growth != 17 {
		t.Errorf("report.json's site %+v, want line 42, growth 17", got)
	}

	none := report.New(res, report.Meta{RunID: "run-2", Origins: &origin.Result{Unavailable: "http://x/debug/pprof/goroutine: 404 Not Found"}})
	var b bytes.Buffer
	if err := none.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "\nno origin given: http://x/debug/pprof/goroutine: 404 Not Found\n") {
		t.Errorf("summary.txt without pprof:\n%s\nwant one line saying why no origin is given", b.String())
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
