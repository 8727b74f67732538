package worker_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/sqlworker/worker"
)

// Reload applies a new config to a running worker: here a job is added.
// A file is reloaded the same way, with LoadConfig.
func ExampleWorker_Reload() {
	dir, err := os.MkdirTemp("", "worker-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	cfg := worker.DefaultConfig()
	cfg.DBPath = filepath.Join(dir, "app.db")
	w, err := worker.New(worker.Options{Config: cfg})
	if err != nil {
		log.Fatal(err)
	}
	defer w.Close(context.Background())
	if err := w.Start(context.Background()); err != nil {
		log.Fatal(err)
	}

	err = w.Reload(func() (*worker.Config, error) {
		cfg, err := worker.ParseConfig([]byte(`
jobs:
  - name: expire_sessions
    schedule: "@every 1m"
    sql: "CREATE TABLE IF NOT EXISTS sessions (expires_at INTEGER); DELETE FROM sessions WHERE expires_at < unixepoch()"
`))
		if err == nil {
			cfg.DBPath = filepath.Join(dir, "app.db") // the one open: a new path would need a restart
		}
		return cfg, err
	})
	if err != nil {
		log.Fatal(err)
	}
	list, err := w.Jobs()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(list[len(list)-1].Name, list[len(list)-1].Spec)
	// Output: expire_sessions @every 1m
}
