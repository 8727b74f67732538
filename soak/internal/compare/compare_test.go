package compare_test

import (
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sqlworker/worker/soak/internal/compare"
	"github.com/sqlworker/worker/soak/internal/report"
	"github.com/sqlworker/worker/soak/internal/standin"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Soak lengths of the tests: CI's short soak and make soak's.
const (
	short = 60 * time.Second
	long  = 10 * time.Minute
)

// soak replays a soak of the stand-in with p and returns its report.
func soak(t *testing.T, p standin.Params, d time.Duration) *report.Report {
	t.Helper()
	warm := 15 * time.Second
	if d > short {
		warm = 30 * time.Second
	}
	res, err := standin.Replay(standin.Models(p), d, warm, false)
	if err != nil {
		t.Fatal(err)
	}
	return report.New(res, report.Meta{RunID: "seed-" + string(rune('a'+p.Seed%26))})
}

// stand returns the stand-in of seed with uniform noise nz and a CPU cost
// per job run jittered by ±50 % a second.
func stand(seed uint64, nz float64) standin.Params {
	return standin.Params{Noise: nz, MemNoise: 2 << 20, Seed: seed, CPUPerRun: 0.005, CPUJitter: 0.5}
}

func row(t *testing.T, r *compare.Result, key string) compare.Row {
	t.Helper()
	for _, row := range r.Rows {
		if row.Key == key {
			return row
		}
	}
	t.Fatalf("no row %s in %+v", key, r.Rows)
	return compare.Row{}
}

// Ensure a candidate holding 2 more connections, or 3 more FDs, than its
// baseline all along is flagged in a 60 s soak, naming the series, the
// shift and its interval, and that nothing else is.
func TestCompare_Step(t *testing.T) {
	for _, tc := range []struct {
		series string
		step   float64
	}{{"worker_db_connections_open", 2}, {"process_open_fds", 3}} {
		t.Run(tc.series, func(t *testing.T) {
			for seed := range uint64(5) {
				cand := stand(seed+100, 1)
				cand.StepSeries, cand.Step = tc.series, tc.step
				r := compare.Compare(soak(t, stand(seed, 1), short), soak(t, cand, short), compare.Options{})
				if r.Status != compare.StatusRegressed {
					t.Fatalf("seed %d: got %s (%s), want regressed", seed, r.Status, r.Verdict)
				}
				got := row(t, r, tc.series)
				if got.Class != compare.Regressed || got.Low <= 0 || got.Shift < tc.step-1 || got.Shift > tc.step+1 {
					t.Errorf("seed %d: got %s shift %g [%g, %g], want regressed by about %g", seed, got.Class, got.Shift, got.Low, got.High, tc.step)
				}
				want := tc.series + " +" + got.Format(got.Shift) + " (95% CI +"
				if !strings.HasPrefix(r.Verdict, "REGRESSED against baseline ") || !strings.Contains(r.Verdict, want) {
					t.Errorf("seed %d: got verdict %q, want it to name %q", seed, r.Verdict, want)
				}
				if n := len(r.Regressions()); n != 1 {
					t.Errorf("seed %d: got %d regressions, want 1: %s", seed, n, r.Verdict)
				}
			}
		})
	}
}

// Ensure clean soaks compared with clean soaks of other noise never
// regress: 50 pairs of 60 s soaks over quiet, noisy, random-walk and
// sawtooth series.
func TestCompare_CleanPairs(t *testing.T) {
	shapes := []struct {
		shape standin.Shape
		noise float64
	}{{standin.Uniform, 0}, {standin.Uniform, 1}, {standin.Uniform, 4}, {standin.Walk, 4}, {standin.Sawtooth, 8}}
	pairs := 0
	for seed := range uint64(10) {
		for _, sh := range shapes {
			b, c := stand(seed, sh.noise), stand(seed+1000, sh.noise)
			b.Shape, c.Shape = sh.shape, sh.shape
			r := compare.Compare(soak(t, b, short), soak(t, c, short), compare.Options{})
			pairs++
			if r.Status != compare.StatusPass {
				t.Errorf("%s %g, seed %d: got %s, want pass: %s", sh.shape, sh.noise, seed, r.Status, r.Verdict)
			}
		}
	}
	if pairs < 50 {
		t.Fatalf("got %d pairs, want at least 50", pairs)
	}
}

// Ensure a job run costing 30 % more CPU is flagged in a 10 m soak, by
// the cost row only.
func TestCompare_CPUPerRun(t *testing.T) {
	cand := stand(7, 1)
	cand.CPUPerRun *= 1.3
	r := compare.Compare(soak(t, stand(3, 1), long), soak(t, cand, long), compare.Options{})
	got := row(t, r, compare.CostKey)
	if got.Class != compare.Regressed {
		t.Fatalf("got %s: %s, want regressed", got.Class, got.Reason)
	}
	if rel := got.Shift / got.Baseline; rel < 0.2 || rel > 0.4 {
		t.Errorf("got shift %+.0f%% of the baseline, want about +30%%", rel*100)
	}
	if !strings.Contains(r.Verdict, compare.CostKey+" +") {
		t.Errorf("got verdict %q, want it to name %s", r.Verdict, compare.CostKey)
	}
	// And the same build against itself (other noise) is unchanged.
	r = compare.Compare(soak(t, stand(3, 1), long), soak(t, stand(7, 1), long), compare.Options{})
	if got := row(t, r, compare.CostKey); got.Class != compare.Unchanged {
		t.Errorf("clean: got %s: %s, want unchanged", got.Class, got.Reason)
	}
}

// Ensure soaks of another length are refused, saying what differs, unless
// forced; and that the target's version is shown, not refused.
func TestCompare_Unlike(t *testing.T) {
	base, cand := soak(t, stand(1, 1), short), soak(t, stand(2, 1), long)
	r := compare.Compare(base, cand, compare.Options{})
	if r.Status != compare.StatusError || len(r.Rows) != 0 {
		t.Fatalf("got %s with %d rows, want error with none", r.Status, len(r.Rows))
	}
	for _, want := range []string{"could not compare: unlike soaks: ", "duration 60s against 600s", "--force"} {
		if !strings.Contains(r.Verdict, want) {
			t.Errorf("got %q, want it to contain %q", r.Verdict, want)
		}
	}
	if r = compare.Compare(base, cand, compare.Options{Force: true}); r.Status == compare.StatusError || len(r.Rows) == 0 {
		t.Errorf("forced: got %s with %d rows, want a comparison", r.Status, len(r.Rows))
	}
	cand = soak(t, stand(2, 1), short)
	cand.Like.TargetVersion = "0.2.0 abc"
	r = compare.Compare(base, cand, compare.Options{})
	if r.Status != compare.StatusPass || len(r.Notes) != 1 || !strings.Contains(r.Notes[0], "0.2.0 abc") {
		t.Errorf("got %s, notes %q; want pass, noting the version", r.Status, r.Notes)
	}
	leaky := stand(5, 1)
	leaky.LeakSeries, leaky.Leak = "process_open_fds", 0.2
	r = compare.Compare(soak(t, leaky, short), soak(t, stand(6, 1), short), compare.Options{})
	if len(r.Notes) != 1 || !strings.HasPrefix(r.Notes[0], "the baseline itself did not pass: LEAK after") {
		t.Errorf("got notes %q, want the baseline's leak noted", r.Notes)
	}
}

// Ensure a series only one side exposes, and a soak too short for enough
// blocks, are not comparable, and that a comparison of nothing is an error.
func TestCompare_NotComparable(t *testing.T) {
	base := soak(t, stand(1, 1), short)
	proc := stand(2, 1)
	proc.Profile = standin.ProcessOnly
	r := compare.Compare(base, soak(t, proc, short), compare.Options{})
	if got := row(t, r, "go_goroutines"); got.Class != compare.NotComparable || got.Reason != "not in the candidate" {
		t.Errorf("got %s (%s), want not comparable, not in the candidate", got.Class, got.Reason)
	}
	if r.Status != compare.StatusPass || !strings.Contains(r.Verdict, "not comparable: ") {
		t.Errorf("got %s %q, want pass naming what was not comparable", r.Status, r.Verdict)
	}
	res, err := standin.Replay(standin.Models(stand(1, 1)), 30*time.Second, 15*time.Second, false)
	if err != nil {
		t.Fatal(err)
	}
	tiny := report.New(res, report.Meta{RunID: "tiny"})
	r = compare.Compare(tiny, tiny, compare.Options{})
	if r.Status != compare.StatusError || !strings.Contains(r.Verdict, "too short: 3 and 3 blocks, want 8") {
		t.Errorf("got %s %q, want error: too short", r.Status, r.Verdict)
	}
}
