package standin

import (
	"strings"
	"time"

	"github.com/sqlworker/worker/soak/internal/runner"
	"github.com/sqlworker/worker/soak/internal/scrape"
	"github.com/sqlworker/worker/soak/internal/series"
)

// Replay soaks models without waiting: it samples them once a second for
// duration, renders each sample as exposition text, parses it with the
// harness's parser and judges the samples through runner.Soak.Replay, the
// code path of a real soak. The detection-power study judges thousands of
// soaks this way, and tests build real reports with it.
func Replay(models []Model, duration, warmup time.Duration, failFast bool) (*runner.Result, error) {
	cfg := runner.Config{Duration: duration, Interval: time.Second, Warmup: warmup,
		FailFast: failFast, Watch: series.DefaultWatch}
	n := int(duration / time.Second)
	scrapes := make([]runner.Scrape, 0, n)
	for k := range n {
		t := float64(k)
		vec, err := scrape.Parse(strings.NewReader(Exposition(models, t)))
		if err != nil {
			return nil, err
		}
		scrapes = append(scrapes, runner.Scrape{T: t, Vector: vec})
	}
	res := runner.New(cfg).Replay(scrapes)
	return res, res.Err
}
