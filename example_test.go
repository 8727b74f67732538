package worker_test

import (
	"context"
	"database/sql"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	_ "github.com/mattn/go-sqlite3" // reads job_runs after the run
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sqlworker/worker"
)

// A Go job, registered beside the config's jobs, runs every second until
// the context is done, here for three runs; each run is in job_runs and in
// worker_job_runs_total.
func Example() {
	dir, err := os.MkdirTemp("", "worker-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	cfg := worker.DefaultConfig()
	cfg.DBPath = filepath.Join(dir, "app.db")

	reg := prometheus.NewRegistry()
	w, err := worker.New(worker.Options{Config: cfg, Registerer: reg})
	if err != nil {
		log.Fatal(err)
	}
	ran := make(chan struct{}, 10)
	err = w.Register("expire_sessions", "* * * * * *", func(ctx context.Context, db *sql.DB) (int64, error) {
		defer func() { ran <- struct{}{} }()
		if _, err := db.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS sessions (expires_at INTEGER)"); err != nil {
			return 0, err
		}
		res, err := db.ExecContext(ctx, "DELETE FROM sessions WHERE expires_at < unixepoch()")
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
		<-ran
	}
	stop() // a graceful shutdown: every run is recorded before Run returns
	if err := <-done; err != nil {
		log.Fatal(err)
	}

	db, err := sql.Open("sqlite3", "file:"+cfg.DBPath+"?mode=ro")
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	var rows float64
	if err := db.QueryRow("SELECT count(*) FROM job_runs WHERE job = 'expire_sessions' AND result = 'success'").Scan(&rows); err != nil {
		log.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		log.Fatal(err)
	}
	var total float64
	for _, mf := range mfs {
		if mf.GetName() != "worker_job_runs_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["job_name"] == "expire_sessions" && labels["result"] == "success" {
				total = m.GetCounter().GetValue()
			}
		}
	}
	fmt.Println("successful runs in job_runs:", rows >= 3)
	fmt.Println("the same in worker_job_runs_total:", total == rows)
	// Output:
	// successful runs in job_runs: true
	// the same in worker_job_runs_total: true
}

// A config entry under jobs with no sql refers to a registered Go job: here
// it disables one and reschedules another. Jobs shows what would run.
func ExampleWorker_Jobs() {
	cfg, err := worker.ParseConfig([]byte(`
jobs:
  - name: rollup
    schedule: "@every 5m"
    sql: DELETE FROM job_runs WHERE result = 'skipped'
  - {name: expire_sessions, schedule: "@every 30s"}
  - {name: send_report, enabled: false}
`))
	if err != nil {
		log.Fatal(err)
	}
	w, err := worker.New(worker.Options{Config: cfg})
	if err != nil {
		log.Fatal(err)
	}
	noop := func(context.Context, *sql.DB) (int64, error) { return 0, nil }
	for _, name := range []string{"expire_sessions", "send_report", "reindex"} {
		if err := w.Register(name, "@daily", noop); err != nil {
			log.Fatal(err)
		}
	}
	jobs, err := w.Jobs()
	if err != nil {
		log.Fatal(err)
	}
	for _, j := range jobs {
		fmt.Println(j.Name, j.Kind, j.Spec, j.Enabled)
	}
	// Output:
	// heartbeat builtin @every 10s true
	// wal_checkpoint builtin @every 5m true
	// optimize builtin @hourly true
	// quick_check builtin @every 15m true
	// history_prune builtin @hourly true
	// rollup sql @every 5m true
	// expire_sessions go @every 30s true
	// send_report go @daily false
	// reindex go @daily true
}

// Register's errors name the job.
func ExampleWorker_Register() {
	w, err := worker.New(worker.Options{})
	if err != nil {
		log.Fatal(err)
	}
	noop := func(context.Context, *sql.DB) (int64, error) { return 0, nil }
	fmt.Println(w.Register("heartbeat", "@hourly", noop))
	fmt.Println(w.Register("report", "every hour", noop))
	// Output:
	// worker: job "heartbeat": duplicate job name (also builtin.heartbeat of the config)
	// worker: job "report": invalid schedule "every hour": expected 5 to 6 fields, found 2: [every hour]
}

// A config built in Go: a zero value is the default (the job below is
// enabled, bounded by DefaultJobTimeout), and New checks it as ParseConfig
// checks a file, refusing what a file may not hold with the same reason.
func ExampleConfig() {
	cfg := &worker.Config{
		MaxOpenConns: 2,
		Jobs: []worker.JobConfig{
			{Name: "purge_events", Spec: "@hourly", SQL: "DELETE FROM job_runs WHERE result = 'skipped'"},
			{Name: worker.BuiltinQuickCheck, Builtin: true, Disabled: true},
		},
	}
	w, err := worker.New(worker.Options{Config: cfg}) // opens nothing yet
	if err != nil {
		log.Fatal(err)
	}
	jobs, err := w.Jobs()
	if err != nil {
		log.Fatal(err)
	}
	for _, j := range jobs {
		if j.Name == "purge_events" || j.Name == worker.BuiltinQuickCheck {
			fmt.Println(j.Name, j.Kind, j.Spec, j.Timeout, j.Enabled)
		}
	}

	cfg.Jobs[0].SQL = "BEGIN; DELETE FROM job_runs; COMMIT"
	_, err = worker.New(worker.Options{Config: cfg})
	fmt.Println(err)
	// Output:
	// quick_check builtin @every 15m 5m0s false
	// purge_events sql @hourly 1m0s true
	// worker: job "purge_events": Config.Jobs[0].SQL: statement 1 (BEGIN) starts a transaction inside the job's; the worker runs each job's SQL in one transaction
}

// An option of a Go job that a program writes: it sets the job's
// settings, and its error is Register's, naming the job and the option.
func ExampleNewJobOption() {
	w, err := worker.New(worker.Options{})
	if err != nil {
		log.Fatal(err)
	}
	hourlyOnly := func(spec string) worker.JobOption {
		return worker.NewJobOption("HourlyOnly", func(j *worker.JobConfig) error {
			if j.Spec != spec {
				return fmt.Errorf("want %s, got %s", spec, j.Spec)
			}
			j.Retries = 2
			return nil
		})
	}
	noop := func(context.Context, *sql.DB) (int64, error) { return 0, nil }
	fmt.Println(w.Register("report", "@hourly", noop, hourlyOnly("@hourly")))
	fmt.Println(w.Register("digest", "@daily", noop, hourlyOnly("@hourly")))
	// Output:
	// <nil>
	// worker: job "digest": HourlyOnly: want @hourly, got @daily
}
