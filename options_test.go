package worker_test

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/sqlworker/worker"
)

// Ensure WithCatchUp, WithRetries and WithJitter set a Go job's policy, a
// config entry of the job overrides what it sets, and bad values are
// refused by Register with an error naming the job and the option.
func TestWorker_Register_ReliabilityOptions(t *testing.T) {
	nop := func(context.Context, *sql.DB) (int64, error) { return 0, nil }
	cfg := MustParseConfig(t, "jobs:\n  - {name: overridden, retries: 1, jitter: 5s}\n")
	w, _ := MustNewWorker(t, cfg)
	for _, name := range []string{"own", "overridden"} {
		if err := w.Register(name, "@every 1m", nop, worker.WithCatchUp(worker.CatchUpAll, 7),
			worker.WithRetries(3, 250*time.Millisecond), worker.WithJitter(10*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	list, err := w.Jobs()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]worker.JobInfo{
		"own":        {CatchUp: worker.CatchUpAll, CatchUpLimit: 7, Retries: 3, RetryBackoff: 250 * time.Millisecond, Jitter: 10 * time.Second},
		"overridden": {CatchUp: worker.CatchUpAll, CatchUpLimit: 7, Retries: 1, RetryBackoff: 250 * time.Millisecond, Jitter: 5 * time.Second},
		"heartbeat":  {CatchUp: worker.CatchUpSkip},
	}
	for _, j := range list {
		w, ok := want[j.Name]
		if !ok {
			continue
		}
		delete(want, j.Name)
		if j.CatchUp != w.CatchUp || j.CatchUpLimit != w.CatchUpLimit || j.Retries != w.Retries || j.RetryBackoff != w.RetryBackoff || j.Jitter != w.Jitter {
			t.Errorf("%s: got %q %d %d %s %s, want %q %d %d %s %s", j.Name, j.CatchUp, j.CatchUpLimit, j.Retries, j.RetryBackoff, j.Jitter,
				w.CatchUp, w.CatchUpLimit, w.Retries, w.RetryBackoff, w.Jitter)
		}
	}
	if len(want) != 0 {
		t.Errorf("jobs missing from Jobs: %v", want)
	}

	for _, tt := range []struct {
		name string
		opt  worker.JobOption
		want string
	}{
		{"catch_up", worker.WithCatchUp("sometimes", 0), `worker: job "bad": WithCatchUp: must be skip, once or all, got "sometimes"`},
		{"limit", worker.WithCatchUp(worker.CatchUpAll, 5000), `worker: job "bad": WithCatchUp: limit must be between 1 and 1000, got 5000`},
		{"retries", worker.WithRetries(-1, 0), `worker: job "bad": WithRetries: must be between 0 and 10, got -1`},
		{"backoff", worker.WithRetries(1, time.Nanosecond), `worker: job "bad": WithRetries: backoff must be at least 1ms, got 1ns`},
		{"jitter", worker.WithJitter(time.Minute), `worker: job "bad": WithJitter: must be less than the schedule's interval (1m0s), got 1m0s`},
		{"dst", worker.WithDST("sometimes"), `worker: job "bad": WithDST: must be cron or wall_clock, got "sometimes"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w, _ := MustNewWorker(t, MustParseConfig(t, ""))
			if err := w.Register("bad", "@every 1m", nop, tt.opt); err == nil || err.Error() != tt.want {
				t.Fatalf("got %v, want %s", err, tt.want)
			}
		})
	}
}

// Ensure a Go job's DST policy comes from WithDST, and a config entry's dst
// overrides it over the Go job's own schedule: across New York's spring
// change, DSTCron runs 02:30 right after it, DSTWallClock not at all.
func TestWorker_Register_DST(t *testing.T) {
	nop := func(context.Context, *sql.DB) (int64, error) { return 0, nil }
	cfg := MustParseConfig(t, "jobs:\n  - {name: overridden, dst: cron}\n")
	w, _ := MustNewWorker(t, cfg)
	const spec = "CRON_TZ=America/New_York 30 2 * * *"
	for _, name := range []string{"default", "wall", "overridden"} {
		var opts []worker.JobOption
		if name != "default" {
			opts = append(opts, worker.WithDST(worker.DSTWallClock))
		}
		if err := w.Register(name, spec, nop, opts...); err != nil {
			t.Fatal(err)
		}
	}
	list, err := w.Jobs()
	if err != nil {
		t.Fatal(err)
	}
	// 9 March 2025, 02:00 EST jumps to 03:00 EDT (07:00 UTC).
	from := time.Date(2025, 3, 9, 5, 0, 0, 0, time.UTC)
	want := map[string]struct {
		dst  worker.DST
		next time.Time
	}{
		"default":    {worker.DSTCron, time.Date(2025, 3, 9, 7, 0, 0, 0, time.UTC)},
		"wall":       {worker.DSTWallClock, time.Date(2025, 3, 10, 6, 30, 0, 0, time.UTC)},
		"overridden": {worker.DSTCron, time.Date(2025, 3, 9, 7, 0, 0, 0, time.UTC)},
	}
	for _, j := range list {
		wj, ok := want[j.Name]
		if !ok {
			continue
		}
		delete(want, j.Name)
		if got := j.Next(from); j.DST != wj.dst || !got.Equal(wj.next) {
			t.Errorf("%s: got dst %q, next %s; want %q, %s", j.Name, j.DST, got.UTC(), wj.dst, wj.next)
		}
	}
	if len(want) != 0 {
		t.Errorf("jobs missing from Jobs: %v", want)
	}
}
