package runner_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"go.uber.org/goleak"

	"github.com/sqlworker/worker/soak/internal/runner"
	"github.com/sqlworker/worker/soak/internal/scrape"
	"github.com/sqlworker/worker/soak/internal/series"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fake is a Scraper that renders exposition text from the scrape count.
type fake struct {
	mu     sync.Mutex
	n      int
	render func(n int) (string, error)
}

func (f *fake) Scrape(context.Context) (model.Vector, error) {
	f.mu.Lock()
	n := f.n
	f.n++
	f.mu.Unlock()
	text, err := f.render(n)
	if err != nil {
		return nil, err
	}
	return scrape.Parse(strings.NewReader(text))
}

func fds(leak bool) func(int) (string, error) {
	return func(n int) (string, error) {
		v := 10 + n%2
		if leak {
			v = 10 + n
		}
		return fmt.Sprintf("process_open_fds %d\ngo_goroutines 7\n", v), nil
	}
}

func config(s runner.Scraper) runner.Config {
	return runner.Config{
		Scraper:  s,
		Duration: 800 * time.Millisecond,
		Interval: 10 * time.Millisecond,
		Warmup:   100 * time.Millisecond,
		Watch:    series.DefaultWatch,
	}
}

// Ensure a steady target is steady and a leaking one is named.
func TestRun_Verdict(t *testing.T) {
	res, err := runner.New(config(&fake{render: fds(false)})).Run(context.Background())
	if err != nil {
		t.Fatalf("got %v, want nil", err)
	}
	if got, want := res.Status(), runner.StatusSteady; got != want {
		t.Fatalf("Status()=%q, want %q (%s)", got, want, res.Sentence())
	}
	if got, want := len(res.Verdicts), 2; got != want {
		t.Fatalf("%d verdicts, want %d", got, want)
	}

	res, err = runner.New(config(&fake{render: fds(true)})).Run(context.Background())
	if err != nil {
		t.Fatalf("got %v, want nil", err)
	}
	leaks := res.Leaks()
	if len(leaks) != 1 || leaks[0].Series != "process_open_fds" {
		t.Fatalf("Leaks()=%v, want process_open_fds", leaks)
	}
	if s := res.Sentence(); !strings.HasPrefix(s, "LEAK") || !strings.Contains(s, "process_open_fds rising +") {
		t.Fatalf("Sentence()=%q, want LEAK naming process_open_fds", s)
	}
}

// Ensure fail-fast ends a long soak once the leak is certain.
func TestRun_FailFast(t *testing.T) {
	cfg := config(&fake{render: fds(true)})
	cfg.Duration = time.Hour
	cfg.FailFast = true
	res, err := runner.New(cfg).Run(context.Background())
	if err != nil {
		t.Fatalf("got %v, want nil", err)
	}
	if !res.StoppedEarly || len(res.Leaks()) != 1 {
		t.Fatalf("StoppedEarly=%v leaks=%v, want true and one leak", res.StoppedEarly, res.Leaks())
	}
}

// Ensure the soak gives up with the right error.
func TestRun_Errors(t *testing.T) {
	t.Run("ScrapesFail", func(t *testing.T) {
		_, err := runner.New(config(&fake{render: func(int) (string, error) {
			return "", errors.New("connection refused")
		}})).Run(context.Background())
		if !errors.Is(err, runner.ErrScrapesFailed) {
			t.Fatalf("got %v, want ErrScrapesFailed", err)
		}
	})
	t.Run("NoWatchedSeries", func(t *testing.T) {
		_, err := runner.New(config(&fake{render: func(int) (string, error) {
			return "foo 1\n", nil
		}})).Run(context.Background())
		if !errors.Is(err, runner.ErrNoWatchedSeries) {
			t.Fatalf("got %v, want ErrNoWatchedSeries", err)
		}
	})
	t.Run("Died", func(t *testing.T) {
		died := make(chan struct{})
		cfg := config(&fake{render: func(n int) (string, error) {
			if n == 5 {
				close(died)
			}
			return "go_goroutines 3\n", nil
		}})
		cfg.Died = died
		res, err := runner.New(cfg).Run(context.Background())
		if !errors.Is(err, runner.ErrTargetDied) || res.Status() != runner.StatusError {
			t.Fatalf("got %v (status %s), want ErrTargetDied", err, res.Status())
		}
	})
	t.Run("Interrupted", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cfg := config(&fake{render: func(n int) (string, error) {
			if n == 3 {
				cancel()
			}
			return "go_goroutines 3\n", nil
		}})
		cfg.Duration = time.Hour
		if _, err := runner.New(cfg).Run(ctx); !errors.Is(err, runner.ErrInterrupted) {
			t.Fatalf("got %v, want ErrInterrupted", err)
		}
	})
}

// Ensure progress lines say where the soak is and what it sees.
func TestRun_Progress(t *testing.T) {
	var buf bytes.Buffer
	cfg := config(&fake{render: fds(false)})
	cfg.Progress = &buf
	cfg.ProgressEvery = 100 * time.Millisecond
	if _, err := runner.New(cfg).Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) < 2 {
		t.Fatalf("got %d progress lines, want several", len(lines))
	}
	if !strings.Contains(lines[0], "elapsed") || !strings.Contains(lines[0], "left") || !strings.Contains(lines[0], "fds 1") {
		t.Fatalf("progress line %q, want elapsed, left and fds", lines[0])
	}
}

// scrapes renders n scrapes of render at 1 s intervals.
func scrapes(t *testing.T, n int, render func(int) (string, error)) []runner.Scrape {
	t.Helper()
	var out []runner.Scrape
	for i := range n {
		text, err := render(i)
		if err != nil {
			t.Fatal(err)
		}
		vec, err := scrape.Parse(strings.NewReader(text))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, runner.Scrape{T: float64(i), Vector: vec})
	}
	return out
}

// Ensure Replay judges recorded scrapes as Run judges live ones: a steady
// target is steady, a leaking one named, and fail-fast stops at the sample
// that made the leak certain.
func TestReplay(t *testing.T) {
	cfg := runner.Config{Duration: time.Minute, Interval: time.Second, Warmup: 15 * time.Second, Watch: series.DefaultWatch}
	res := runner.New(cfg).Replay(scrapes(t, 60, fds(false)))
	if got, want := res.Status(), runner.StatusSteady; got != want {
		t.Fatalf("Status()=%v, want %v (%s)", got, want, res.Sentence())
	}
	res = runner.New(cfg).Replay(scrapes(t, 60, fds(true)))
	if leaks := res.Leaks(); len(leaks) != 1 || leaks[0].Series != "process_open_fds" {
		t.Fatalf("Leaks()=%v, want process_open_fds", leaks)
	}
	cfg.FailFast = true
	res = runner.New(cfg).Replay(scrapes(t, 60, fds(true)))
	if !res.StoppedEarly {
		t.Fatalf("StoppedEarly=%v, want true", res.StoppedEarly)
	}
	if got := res.StoppedAt - cfg.Warmup.Seconds(); got > 15 {
		t.Fatalf("stopped %gs after warm-up, want within 15 s", got)
	}
	if got, want := res.Elapsed.Seconds(), res.StoppedAt; got != want {
		t.Fatalf("Elapsed=%gs, want the stopping sample's %gs", got, want)
	}
}

// Ensure a series too short to decide is named in the steady verdict
// instead of passing silently.
func TestRun_Undecided(t *testing.T) {
	cfg := runner.Config{Duration: time.Minute, Interval: time.Second, Warmup: 15 * time.Second, Watch: series.DefaultWatch}
	sc := scrapes(t, 60, fds(false))
	// go_goroutines vanishes after 20 s: 5 judged samples.
	for i := 20; i < len(sc); i++ {
		var kept model.Vector
		for _, smp := range sc[i].Vector {
			if smp.Metric[model.MetricNameLabel] != "go_goroutines" {
				kept = append(kept, smp)
			}
		}
		sc[i].Vector = kept
	}
	res := runner.New(cfg).Replay(sc)
	if got, want := res.Status(), runner.StatusSteady; got != want {
		t.Fatalf("Status()=%v, want %v", got, want)
	}
	if u := res.Undecided(); len(u) != 1 || u[0].Series != "go_goroutines" {
		t.Fatalf("Undecided()=%v, want go_goroutines", u)
	}
	if s := res.Sentence(); !strings.Contains(s, "1 not decided: go_goroutines (too short)") {
		t.Fatalf("Sentence()=%q, want it to name go_goroutines as too short", s)
	}
}

// Ensure AfterWarmup is called once, from the first sample at or after
// warm-up, for the base profiles.
func TestRun_AfterWarmup(t *testing.T) {
	cfg := config(&fake{render: fds(false)})
	var calls []float64
	cfg.AfterWarmup = func(t float64) { calls = append(calls, t) }
	if _, err := runner.New(cfg).Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(calls) != 1 || calls[0] < cfg.Warmup.Seconds() {
		t.Fatalf("AfterWarmup called at %v, want once, at or after %gs", calls, cfg.Warmup.Seconds())
	}
}

// Ensure the verdict names where a leaking series grew, when the soak
// found it, after its slope.
func TestResult_SentenceCulprit(t *testing.T) {
	cfg := runner.Config{Duration: time.Minute, Interval: time.Second, Warmup: 15 * time.Second, Watch: series.DefaultWatch}
	res := runner.New(cfg).Replay(scrapes(t, 60, fds(true)))
	res.Culprits = map[string]string{"process_open_fds": "from app.initDb (app/db.go:42)"}
	if s := res.Sentence(); !regexp.MustCompile(`: process_open_fds rising \+\d+/h from app\.initDb \(app/db\.go:42\)\.$`).MatchString(s) {
		t.Fatalf("Sentence()=%q, want the leak's slope followed by its culprit", s)
	}
}
