package worker_test

import (
	"strconv"
	"strings"
	"testing"

	"github.com/sqlworker/worker/internal/outside"
)

// outsideMain is a program of a module outside this repository: it
// registers a Go job, runs the worker on a database in the directory given,
// stops once the job ran a few times, and prints what job_runs and
// worker_job_runs_total say of it.
const outsideMain = `package main

import (
	"context"
	"database/sql"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	_ "github.com/mattn/go-sqlite3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sqlworker/worker"
)

func main() {
	cfg := worker.DefaultConfig()
	cfg.DBPath = filepath.Join(os.Args[1], "app.db")
	reg := prometheus.NewRegistry()
	w, err := worker.New(worker.Options{Config: cfg, Registerer: reg})
	if err != nil {
		log.Fatal(err)
	}
	ran := make(chan struct{}, 10)
	err = w.Register("outside_job", "* * * * * *", func(ctx context.Context, db *sql.DB) (int64, error) {
		defer func() { ran <- struct{}{} }()
		if _, err := db.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS ticks (at TEXT)"); err != nil {
			return 0, err
		}
		res, err := db.ExecContext(ctx, "INSERT INTO ticks VALUES (datetime('now'))")
		if err != nil {
			return 0, err
		}
		return res.RowsAffected()
	}, worker.WithTimeout(5*time.Second))
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	for range 3 {
		select {
		case <-ran:
		case <-time.After(30 * time.Second):
			log.Fatal("the job did not run")
		}
	}
	stop()
	if err := <-done; err != nil {
		log.Fatal(err)
	}

	db, err := sql.Open("sqlite3", "file:"+cfg.DBPath+"?mode=ro")
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow("SELECT count(*) FROM job_runs WHERE job = 'outside_job' AND result = 'success' AND rows_affected = 1").Scan(&n); err != nil {
		log.Fatal(err)
	}
	fmt.Println("job_runs:", n)
	mfs, err := reg.Gather()
	if err != nil {
		log.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if mf.GetName() != "worker_job_runs_total" {
				continue
			}
			var job, result string
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "job":
					job = l.GetValue()
				case "result":
					result = l.GetValue()
				}
			}
			if job == "outside_job" && result == "success" {
				fmt.Println("worker_job_runs_total:", m.GetCounter().GetValue())
			}
		}
	}
}
`

// Ensure a module outside this repository can embed the worker: it
// registers a Go job and runs the worker for a few seconds, and the runs
// are in job_runs and in worker_job_runs_total, the same number in both.
func TestWorker_Outside(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a module of its own")
	}
	dir := outside.Module(t, map[string][]byte{"main.go": []byte(outsideMain)})
	data := t.TempDir()
	out := outside.Go(t, dir, "run", ".", data)
	var runs, total string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if v, ok := strings.CutPrefix(line, "job_runs: "); ok {
			runs = v
		}
		if v, ok := strings.CutPrefix(line, "worker_job_runs_total: "); ok {
			total = v
		}
	}
	if n, err := strconv.Atoi(runs); err != nil || n < 3 {
		t.Fatalf("job_runs: got %q, want at least 3\n%s", runs, out)
	}
	if total != runs {
		t.Fatalf("worker_job_runs_total: got %q, want %q (job_runs)\n%s", total, runs, out)
	}
}
