package jobs

import (
	"context"
	"database/sql"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sqlworker/worker/internal/schedule"
)

// nopDB is a database that never opens: runs fail, and nothing is written.
type nopDB struct{}

func (nopDB) Init(context.Context) (*sql.DB, error) { return nil, errors.New("no database") }

var testutilCounter = testutil.ToFloat64

// Ensure missedTicks counts every tick after last up to now and keeps the
// newest, oldest first.
func TestMissedTicks(t *testing.T) {
	s, err := schedule.Parse("* * * * * *")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 1, 1, 12, 0, 0, 500e6, time.UTC)
	ticks, n := missedTicks(s, now.Add(-10*time.Second), now, 3)
	if n != 10 || len(ticks) != 3 || !ticks[2].Equal(now.Truncate(time.Second)) || !ticks[0].Equal(now.Truncate(time.Second).Add(-2*time.Second)) {
		t.Fatalf("got %v of %d, want the 3 newest of 10 ending at %v", ticks, n, now.Truncate(time.Second))
	}
	if _, n := missedTicks(s, now, now, 3); n != 0 {
		t.Fatalf("no time passed: got %d missed, want 0", n)
	}
	// Down for a year: counted by the interval beyond maxMissedWalk.
	ticks, n = missedTicks(s, now.Add(-365*24*time.Hour), now, 2)
	if want := 365 * 24 * 3600; n < want-5 || n > want+5 || !ticks[1].Equal(now.Truncate(time.Second)) {
		t.Fatalf("a year: got %d missed, newest %v, want about %d and %v", n, ticks[len(ticks)-1], want, now.Truncate(time.Second))
	}
}

// Ensure the wait between attempts doubles from the backoff, capped.
func TestBackoff(t *testing.T) {
	for _, tt := range []struct {
		base    time.Duration
		attempt int
		want    time.Duration
	}{
		{0, 1, DefaultRetryBackoff},
		{time.Second, 1, time.Second},
		{time.Second, 2, 2 * time.Second},
		{time.Second, 4, 8 * time.Second},
		{time.Minute, 10, MaxRetryBackoff},
		{MaxRetryBackoff, 3, MaxRetryBackoff},
	} {
		if got := backoff(tt.base, tt.attempt); got != tt.want {
			t.Errorf("backoff(%s, %d): got %s, want %s", tt.base, tt.attempt, got, tt.want)
		}
	}
}

// Ensure that after a pause, when cron fires late over several ticks, the
// policy picks what runs and counts the rest as skipped: skip runs the
// oldest (cron's own), once the newest, all up to the limit.
func TestScheduler_RunTick_AfterPause(t *testing.T) {
	for _, tt := range []struct {
		policy  CatchUp
		limit   int
		ran     []int // seconds before now of the ticks run
		skipped float64
	}{
		{CatchUpSkip, 0, []int{5}, 5},
		{CatchUpOnce, 0, []int{0}, 5},
		{CatchUpAll, 4, []int{3, 2, 1, 0}, 2},
	} {
		t.Run(string(tt.policy), func(t *testing.T) {
			sched, err := schedule.Parse("* * * * * *")
			if err != nil {
				t.Fatal(err)
			}
			var ran []time.Time
			j := Job{Name: "j", Spec: "* * * * * *", Schedule: sched, CatchUp: tt.policy, CatchUpLimit: tt.limit,
				Func: func(context.Context, *sql.DB) (int64, error) { return 0, nil }}
			s, err := New(Config{DB: nopDB{}, OnFinish: func(r *Run, _ error) { ran = append(ran, r.ScheduledAt) }}, []Job{j})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Stop(context.Background())
			now := time.Now().Truncate(time.Second).Add(100 * time.Millisecond)
			s.runTick(s.entries[0], now.Add(-100*time.Millisecond-5*time.Second), now)
			if len(ran) != len(tt.ran) {
				t.Fatalf("ran %v, want %d runs", ran, len(tt.ran))
			}
			for i, sec := range tt.ran {
				if want := now.Truncate(time.Second).Add(-time.Duration(sec) * time.Second); !ran[i].Equal(want) {
					t.Errorf("run %d: got tick %v, want %v", i, ran[i], want)
				}
			}
			if got := testutilCounter(s.metrics.ticksSkipped.WithLabelValues("j")); got != tt.skipped {
				t.Errorf("ticks skipped: got %v, want %v", got, tt.skipped)
			}
		})
	}
}

// Ensure a jitter wait ends at once when Stop begins, and the tick is
// counted as skipped.
func TestScheduler_WaitJitter_Stop(t *testing.T) {
	sched, err := schedule.Parse("@daily")
	if err != nil {
		t.Fatal(err)
	}
	j := Job{Name: "j", Spec: "@daily", Schedule: sched, Jitter: 23 * time.Hour,
		Func: func(context.Context, *sql.DB) (int64, error) { return 0, nil }}
	s, err := New(Config{DB: nopDB{}}, []Job{j})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan bool)
	go func() { done <- s.waitJitter(s.entries[0], &Run{Job: "j", ScheduledAt: time.Now()}) }()
	if err := s.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if <-done {
		t.Fatal("waitJitter: got true after Stop, want false")
	}
	if got := testutilCounter(s.metrics.ticksSkipped.WithLabelValues("j")); got != 1 {
		t.Errorf("ticks skipped: got %v, want 1", got)
	}
}
