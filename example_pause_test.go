package worker_test

import (
	"context"
	"database/sql"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/sqlworker/worker"
)

// A job is paused with a reason, as an operator does during a migration:
// the pause is a row of job_pauses, so a worker started again on the same
// database still has it, until Resume.
func ExampleWorker_Pause() {
	dir, err := os.MkdirTemp("", "worker-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	cfg := worker.DefaultConfig()
	cfg.DBPath = filepath.Join(dir, "app.db")
	start := func() *worker.Worker {
		w, err := worker.New(worker.Options{Config: cfg})
		if err != nil {
			log.Fatal(err)
		}
		err = w.Register("rollup", "@hourly", func(context.Context, *sql.DB) (int64, error) { return 0, nil })
		if err != nil {
			log.Fatal(err)
		}
		if err := w.Start(context.Background()); err != nil {
			log.Fatal(err)
		}
		return w
	}
	ctx := context.Background()

	w := start()
	if err := w.Pause(ctx, "rollup", "migrating the orders table"); err != nil {
		log.Fatal(err)
	}
	if err := w.Close(ctx); err != nil {
		log.Fatal(err)
	}

	w = start() // a restart
	defer w.Close(ctx)
	p, paused := w.Paused("rollup")
	fmt.Println("paused after a restart:", paused, p.Reason)
	if err := w.Resume(ctx, "rollup"); err != nil {
		log.Fatal(err)
	}
	_, paused = w.Paused("rollup")
	fmt.Println("paused after Resume:", paused)
	// Output:
	// paused after a restart: true migrating the orders table
	// paused after Resume: false
}
