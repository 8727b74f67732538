package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sqlworker/worker/soak/internal/report"
	"github.com/sqlworker/worker/soak/internal/standin"
)

// writeReport replays a soak of the stand-in with p for d and writes its
// report into dir.
func writeReport(t *testing.T, dir, id string, p standin.Params, d time.Duration) string {
	t.Helper()
	res, err := standin.Replay(standin.Models(p), d, 15*time.Second, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := report.New(res, report.Meta{RunID: id}).Write(dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

// Ensure the nightly's comparison script (soak/nightly-compare.sh), with
// bin/soak built from this command, passes
// and keeps a baseline the first night, compares the next, keeps the
// baseline when something regressed (exit 1), and passes on the trend
// alone when the soaks are unlike.
func TestNightlyCompareScript(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "soak")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	base := filepath.Join(dir, "baseline")
	summary := filepath.Join(dir, "summary.md")
	night := func(report string) (int, string) {
		cmd := exec.Command("sh", "../../nightly-compare.sh", base, report)
		cmd.Env = append(os.Environ(), "SOAK_BIN="+bin, "GITHUB_STEP_SUMMARY="+summary)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return exit.ExitCode(), out.String()
		} else if err != nil {
			t.Fatal(err)
		}
		return 0, out.String()
	}
	baselineID := func() string {
		r, err := report.Load(base)
		if err != nil {
			t.Fatal(err)
		}
		return r.RunID
	}
	quiet := func(seed uint64) standin.Params { return standin.Params{Noise: 1, MemNoise: 2 << 20, Seed: seed} }
	step := quiet(3)
	step.StepSeries, step.Step = "process_open_fds", 3

	for _, n := range []struct {
		name, id string
		p        standin.Params
		d        time.Duration
		exit     int
		say      string
		baseline string
	}{
		{"first night", "n1", quiet(1), time.Minute, 0, "soak: no baseline in " + base, "n1"},
		{"clean night", "n2", quiet(2), time.Minute, 0, "soak: NO REGRESSION against baseline n1", "n2"},
		{"regressed night", "n3", step, time.Minute, 1, "soak: REGRESSED against baseline n2: process_open_fds +3", "n2"},
		{"unlike night", "n4", quiet(4), 2 * time.Minute, 0, "soak: could not compare with the baseline", "n4"},
	} {
		rep := writeReport(t, filepath.Join(dir, n.id), n.id, n.p, n.d)
		code, out := night(rep)
		if code != n.exit || !strings.Contains(out, n.say) {
			t.Errorf("%s: got exit %d\n%s\nwant exit %d saying %q", n.name, code, out, n.exit, n.say)
		}
		if got := baselineID(); got != n.baseline {
			t.Errorf("%s: got baseline %s, want %s", n.name, got, n.baseline)
		}
	}
	b, err := os.ReadFile(summary)
	if err != nil || !strings.Contains(string(b), "judged on the trend alone") || !strings.Contains(string(b), "REGRESSED against baseline n2") {
		t.Errorf("job summary: %v\n%s", err, b)
	}
}
