package jobtest_test

import (
	"context"
	"database/sql"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/sqlworker/worker"
	"github.com/sqlworker/worker/jobtest"
)

// Drive a daily job's schedule by hand: the worker is open but not
// started, so nothing fires by itself, and RunTick runs the two ticks Ticks
// gives, now, each recorded with its scheduled time. The Recorder, the
// worker's run hook, has their records.
func ExampleRunTick() {
	dir, err := os.MkdirTemp("", "jobtest-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	cfg := worker.DefaultConfig()
	cfg.DBPath = filepath.Join(dir, "app.db")
	cfg.Location = time.UTC

	rec := jobtest.NewRecorder()
	w, err := worker.New(worker.Options{Config: cfg, OnRun: rec.OnRun})
	if err != nil {
		log.Fatal(err)
	}
	defer w.Close(context.Background())
	err = w.Register("rollup", "30 2 * * *", func(ctx context.Context, db *sql.DB) (int64, error) {
		return 1, db.PingContext(ctx)
	})
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.Open(ctx); err != nil {
		log.Fatal(err)
	}

	ticks, err := jobtest.Ticks(w, "rollup", time.Date(2026, 12, 24, 12, 0, 0, 0, time.UTC), 2)
	if err != nil {
		log.Fatal(err)
	}
	for _, at := range ticks {
		r, err := jobtest.RunTick(ctx, w, "rollup", at)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(r.ScheduledAt.Format(time.RFC3339), r.Result)
	}
	r, err := rec.Wait(ctx, "rollup")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("hook:", r.ScheduledAt.Format(time.RFC3339), r.Result)
	// Output:
	// 2026-12-25T02:30:00Z success
	// 2026-12-26T02:30:00Z success
	// hook: 2026-12-25T02:30:00Z success
}
