package jobhistory_test

import (
	"context"
	"database/sql"
	"fmt"
	"testing"
	"time"

	"github.com/sqlworker/worker/internal/floorbench"
	"github.com/sqlworker/worker/internal/jobhistory"
)

// Ensure job_pauses round-trips on both backends: a pause is read back
// with its reason, time and replica, a second pause replaces the first,
// and a resume deletes it and says whether there was one; and that
// RecentRuns returns a job's newest rows, newest first, bounded.
func TestPauses(t *testing.T) {
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			d := open(t, backend)
			testPauses(t, d)
			testRecentRuns(t, d)
		})
	}
}

func testPauses(t *testing.T, d *sql.DB) {
	ctx := context.Background()
	at := time.Date(2026, 12, 7, 23, 0, 0, 123e6, time.UTC)
	for _, p := range []jobhistory.PauseRow{
		{Job: "a", Reason: "first", PausedAt: at, PausedBy: "r1"},
		{Job: "a", Reason: "second 'quoted'", PausedAt: at.Add(time.Second), PausedBy: "r2"},
		{Job: "b", PausedAt: at},
	} {
		if err := jobhistory.SetPause(ctx, d, p); err != nil {
			t.Fatal(err)
		}
	}
	got, err := jobhistory.Pauses(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	want := jobhistory.PauseRow{Job: "a", Reason: "second 'quoted'", PausedAt: at.Add(time.Second), PausedBy: "r2"}
	if len(got) != 2 || got["a"] != want || got["b"].Reason != "" || !got["b"].PausedAt.Equal(at) {
		t.Fatalf("Pauses: got %+v, want a: %+v and b", got, want)
	}
	for _, tc := range []struct {
		job string
		was bool
	}{{"a", true}, {"a", false}, {"nope", false}} {
		if was, err := jobhistory.DeletePause(ctx, d, tc.job); err != nil || was != tc.was {
			t.Errorf("DeletePause(%s): got %v, %v, want %v", tc.job, was, err, tc.was)
		}
	}
	if got, err := jobhistory.Pauses(ctx, d); err != nil || len(got) != 1 {
		t.Errorf("Pauses after resuming a: got %v, %v, want b only", got, err)
	}
}

func testRecentRuns(t *testing.T, d *sql.DB) {
	ctx := context.Background()
	at := time.Date(2026, 12, 7, 23, 0, 0, 0, time.UTC)
	var rows []jobhistory.RunRow
	for i := range 5 {
		start := at.Add(time.Duration(i) * time.Minute)
		rows = append(rows, jobhistory.RunRow{Job: "r", ScheduledAt: start, StartedAt: start, EndedAt: start.Add(time.Second),
			Result: "failure", Error: "boom", Attempt: 1, Jitter: 5 * time.Millisecond})
	}
	rows = append(rows, jobhistory.RunRow{Job: "other", ScheduledAt: at, StartedAt: at, EndedAt: at, Result: "success"})
	if err := jobhistory.InsertRuns(ctx, d, rows); err != nil {
		t.Fatal(err)
	}
	got, err := jobhistory.RecentRuns(ctx, d, "r", 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("RecentRuns(r, 3): got %d rows, want 3", len(got))
	}
	for i, r := range got {
		want := rows[4-i]
		if !r.StartedAt.Equal(want.StartedAt) || !r.EndedAt.Equal(want.EndedAt) || r.Result != "failure" || r.Error != "boom" || r.Jitter != want.Jitter {
			t.Errorf("RecentRuns(r, 3)[%d]: got %+v, want %+v", i, r, want)
		}
	}
	if got, err := jobhistory.RecentRuns(ctx, d, "r", 1000); err != nil || len(got) != 5 {
		t.Errorf("RecentRuns(r, 1000): got %d rows (%v), want 5", len(got), err)
	}
}

// BenchmarkPauses measures the read of job_pauses that a PostgreSQL replica
// makes once a second (jobs.DefaultPauseRefresh) and a Scheduler at Start,
// with 10 jobs paused, against its floor: a SELECT 1 round trip on the same
// handle. No tick reads the table: the cost is per second, not per tick.
func BenchmarkPauses(b *testing.B) {
	for _, backend := range []string{"sqlite", "postgres"} {
		b.Run(backend, func(b *testing.B) {
			d := open(b, backend)
			ctx := context.Background()
			for i := range 10 {
				if err := jobhistory.SetPause(ctx, d, jobhistory.PauseRow{Job: fmt.Sprint("job_", i), Reason: "bench", PausedAt: time.Now()}); err != nil {
					b.Fatal(err)
				}
			}
			floorbench.Pair(b, func(b *testing.B) {
				var one int
				if err := d.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
					b.Fatal(err)
				}
			}, func(b *testing.B) {
				if p, err := jobhistory.Pauses(ctx, d); err != nil || len(p) != 10 {
					b.Fatalf("Pauses: got %d rows, %v", len(p), err)
				}
			})
		})
	}
}
