package jobs_test

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sqlworker/worker/internal/jobs"
)

// Ensure Backfill runs each tick of a range that has no success row once,
// oldest first, with its own scheduled_at, leaves a succeeded one alone
// (unless Rerun), and that a dry run lists the same ticks and runs nothing.
func TestBackfill(t *testing.T) {
	var mu sync.Mutex
	var ran []time.Time
	j := mustSchedule(t, "0 * * * *") // hourly, on the hour
	j.Name = "hourly"
	j.Func = func(ctx context.Context, _ *sql.DB) (int64, error) { return 1, nil }
	s, h, _ := setup(t, jobs.Config{Location: time.UTC, OnFinish: func(r *jobs.Run, _ error) {
		mu.Lock()
		ran = append(ran, r.ScheduledAt)
		mu.Unlock()
	}}, j)
	to := time.Now().UTC().Truncate(time.Hour)
	from := to.Add(-4 * time.Hour) // 5 ticks: from, +1h, ..., to
	seedRun(t, h, "hourly", from.Add(time.Hour))

	dry, err := s.Backfill(context.Background(), "hourly", from, to, jobs.BackfillOptions{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := statuses(dry), "would_run,done,would_run,would_run,would_run"; got != want {
		t.Fatalf("dry run: got %s, want %s", got, want)
	}
	if len(ran) != 0 {
		t.Fatalf("dry run ran %d ticks", len(ran))
	}
	got, err := s.Backfill(context.Background(), "hourly", from, to, jobs.BackfillOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := statuses(got), "ran,done,ran,ran,ran"; got != want {
		t.Fatalf("backfill: got %s, want %s", got, want)
	}
	for i, want := range []time.Time{from, from.Add(2 * time.Hour), from.Add(3 * time.Hour), to} {
		if !ran[i].Equal(want) {
			t.Fatalf("run %d scheduled at %s, want %s", i, ran[i], want)
		}
	}
	// A second backfill finds every tick done; Rerun runs them all again.
	again, _ := s.Backfill(context.Background(), "hourly", from, to, jobs.BackfillOptions{})
	if got, want := statuses(again), "done,done,done,done,done"; got != want {
		t.Fatalf("second backfill: got %s, want %s", got, want)
	}
	rerun, _ := s.Backfill(context.Background(), "hourly", from, to, jobs.BackfillOptions{Rerun: true})
	if got, want := statuses(rerun), "ran,ran,ran,ran,ran"; got != want {
		t.Fatalf("rerun: got %s, want %s", got, want)
	}
	if got, want := len(column(t, h, "id", "hourly")), 1+4+5; got != want {
		t.Fatalf("job_runs rows: got %d, want %d", got, want)
	}
}

// Ensure a range too large, reversed, in the future or with no tick is
// refused naming the bound, and an unknown job with ErrUnknownJob.
func TestBackfill_Range(t *testing.T) {
	j := mustSchedule(t, "* * * * * *")
	j.Name, j.Func = "sec", func(context.Context, *sql.DB) (int64, error) { return 0, nil }
	s, _, _ := setup(t, jobs.Config{}, j)
	now := time.Now()
	for _, tt := range []struct {
		name     string
		from, to time.Time
		want     string
	}{
		{"TooMany", now.Add(-time.Hour), now, "more than 1000 ticks"},
		{"Reversed", now, now.Add(-time.Minute), "is not before to"},
		{"Future", now.Add(-time.Minute), now.Add(time.Minute), "is in the future"},
		{"NoTick", now.Add(-time.Second).Truncate(time.Second).Add(100 * time.Millisecond), now.Add(-time.Second).Truncate(time.Second).Add(200 * time.Millisecond), "has no tick"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.Backfill(context.Background(), "sec", tt.from, tt.to, jobs.BackfillOptions{DryRun: true})
			if !errors.Is(err, jobs.ErrBackfillRange) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want ErrBackfillRange with %q", err, tt.want)
			}
		})
	}
	if _, err := s.Backfill(context.Background(), "none", now.Add(-time.Minute), now, jobs.BackfillOptions{}); !errors.Is(err, jobs.ErrUnknownJob) {
		t.Fatalf("unknown job: got %v, want ErrUnknownJob", err)
	}
}

func statuses(ticks []jobs.BackfillTick) string {
	var out []string
	for _, t := range ticks {
		out = append(out, t.Status)
	}
	return strings.Join(out, ",")
}

// Ensure a backfill honours the job's overlap policy: under skip, the
// ticks that come while the job runs are skipped; under buffer_one, the
// first waits for the running run and the rest run after it.
func TestBackfill_Overlap(t *testing.T) {
	for _, tt := range []struct {
		policy jobs.Overlap
		want   string
	}{
		{jobs.OverlapSkip, "skipped,skipped"},
		{jobs.OverlapBufferOne, "ran,ran"},
	} {
		t.Run(string(tt.policy), func(t *testing.T) {
			h := newHeld(false)
			j := overlapJob(t, "hourly", tt.policy, h.fn)
			j.Schedule = mustSchedule(t, "0 * * * *").Schedule
			s, _, _ := setup(t, jobs.Config{Location: time.UTC}, j)
			first := runAsync(s, "hourly")
			<-h.started
			to := time.Now().UTC().Truncate(time.Hour)
			done := make(chan []jobs.BackfillTick, 1)
			go func() {
				ticks, err := s.Backfill(context.Background(), "hourly", to.Add(-time.Hour), to, jobs.BackfillOptions{})
				if err != nil {
					t.Error(err)
				}
				done <- ticks
			}()
			if tt.policy == jobs.OverlapBufferOne {
				waitWaiting(t, s, "hourly")
			} else if got := statuses(<-done); got != tt.want {
				t.Fatalf("backfill while the job runs: got %s, want %s", got, tt.want)
			}
			close(h.release)
			<-first
			if tt.policy == jobs.OverlapBufferOne {
				if got := statuses(<-done); got != tt.want {
					t.Fatalf("backfill after the run: got %s, want %s", got, tt.want)
				}
			}
		})
	}
}
