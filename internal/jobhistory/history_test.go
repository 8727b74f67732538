package jobhistory_test

import (
	"context"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/sqlworker/worker/internal/jobhistory"
	"github.com/sqlworker/worker/internal/workertest"
)

// Ensure CapRuns keeps each job's newest rows, by started_at, up to the
// cap, deletes the older ones, and leaves a job under the cap alone.
func TestCapRuns(t *testing.T) {
	ctx := context.Background()
	h := workertest.MustOpenHandle(t)
	d, err := h.Init(ctx)
	if err != nil {
		t.Fatal(err)
	}
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var rows []jobhistory.RunRow
	// Inserted newest first, so that id order is not started_at order.
	for job, n := range map[string]int{"a": 10, "b": 3, "c": 5} {
		for i := n - 1; i >= 0; i-- {
			at := base.Add(time.Duration(i) * time.Minute)
			rows = append(rows, jobhistory.RunRow{Job: job, ScheduledAt: at, StartedAt: at, EndedAt: at, Result: "success"})
		}
	}
	if err := jobhistory.InsertRuns(ctx, d, rows); err != nil {
		t.Fatal(err)
	}
	deleted, err := jobhistory.CapRuns(ctx, d, 4)
	if err != nil {
		t.Fatal(err)
	}
	if deleted != 7 {
		t.Fatalf("deleted: got %d, want 7 (6 of a, 1 of c)", deleted)
	}
	minutes := func(job string) []string {
		r, err := d.Query("SELECT started_at FROM job_runs WHERE job = ? ORDER BY started_at", job)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		var out []string
		for r.Next() {
			var s string
			if err := r.Scan(&s); err != nil {
				t.Fatal(err)
			}
			at, err := time.Parse(jobhistory.TimeFormat, s)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, fmt.Sprint(int(at.Sub(base).Minutes())))
		}
		if err := r.Err(); err != nil {
			t.Fatal(err)
		}
		return out
	}
	for job, want := range map[string][]string{
		"a": {"6", "7", "8", "9"},
		"b": {"0", "1", "2"},
		"c": {"1", "2", "3", "4"},
	} {
		if got := minutes(job); !reflect.DeepEqual(got, want) {
			t.Errorf("job %s: minutes of the rows kept: got %v, want %v", job, got, want)
		}
	}
	if deleted, err := jobhistory.CapRuns(ctx, d, 4); err != nil || deleted != 0 {
		t.Fatalf("second CapRuns: got %d (%v), want 0", deleted, err)
	}
	if _, err := jobhistory.CapRuns(ctx, d, 0); err == nil {
		t.Fatalf("CapRuns(0): got nil, want an error")
	}
}
