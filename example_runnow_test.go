package worker_test

import (
	"context"
	"database/sql"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/sqlworker/worker"
)

// RunNow runs a job at once, through the chain a scheduled run goes
// through, and returns its record; Options.OnRun gets every finished run's
// record too, from a goroutine of its own. A test waits on them, not on the
// clock.
func ExampleWorker_RunNow() {
	dir, err := os.MkdirTemp("", "worker-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	cfg := worker.DefaultConfig()
	cfg.DBPath = filepath.Join(dir, "app.db")

	finished := make(chan worker.RunRecord, 100) // the built-in jobs' runs come here too
	w, err := worker.New(worker.Options{Config: cfg, OnRun: func(r worker.RunRecord) { finished <- r }})
	if err != nil {
		log.Fatal(err)
	}
	defer w.Close(context.Background())
	err = w.Register("send_report", "@daily", func(ctx context.Context, db *sql.DB) (int64, error) {
		return 42, db.PingContext(ctx)
	})
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.Start(ctx); err != nil {
		log.Fatal(err)
	}

	r, err := w.RunNow(ctx, "send_report")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(r.Job, r.Result, r.RowsAffected, r.Err)
	for hooked := range finished {
		if hooked.Job == "send_report" {
			fmt.Println("hook:", hooked.Job, hooked.Result, hooked.EndedAt.Equal(r.EndedAt))
			break
		}
	}
	_, err = w.RunNow(ctx, "no_such_job")
	fmt.Println(err)
	// Output:
	// send_report success 42 <nil>
	// hook: send_report success true
	// unknown job: "no_such_job" is not scheduled (no such job, or disabled)
}
