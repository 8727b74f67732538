// This file is a test of a module outside the worker's repository: the
// worker's outside_test.go copies it into one and runs it. It uses only
// the worker's public API.
package embed_test

import (
	"context"
	"database/sql"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3" // reads job_runs after the run
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sqlworker/worker"
	"github.com/sqlworker/worker/jobtest"
)

// A config built entirely in Go: database settings, a SQL job, two Go
// jobs (one of them rescheduled by its config entry), the handler on the
// program's own mux, and the documented shutdown order.
func TestConfigInGo(t *testing.T) {
	dbPath := filepath.Join(t.TempDir(), "app.db")
	cfg := &worker.Config{
		DBPath:        dbPath,
		MaxOpenConns:  2,
		BusyTimeout:   2 * time.Second,
		Checkpoint:    worker.CheckpointWorker,
		Location:      time.UTC,
		ShutdownGrace: 5 * time.Second,
		Jobs: []worker.JobConfig{
			{Name: worker.BuiltinQuickCheck, Builtin: true, Disabled: true},
			{Name: "rollup", Spec: "* * * * * *", Timeout: 10 * time.Second,
				SQL: "CREATE TABLE IF NOT EXISTS rollups (at INTEGER); INSERT INTO rollups VALUES (unixepoch())"},
			{Name: "send_report", Spec: "* * * * * *"}, // the Go job's entry: every second, not daily
		},
	}
	reg := prometheus.NewRegistry()
	runs := jobtest.NewRecorder()
	w, err := worker.New(worker.Options{Config: cfg, Registerer: reg, OnRun: runs.OnRun})
	if err != nil {
		t.Fatal(err)
	}
	for name, spec := range map[string]string{"expire_sessions": "* * * * * *", "send_report": "@daily"} {
		err := w.Register(name, spec, func(ctx context.Context, db *sql.DB) (int64, error) {
			return 0, db.PingContext(ctx)
		}, worker.WithTimeout(5*time.Second), worker.WithRetries(1, 0))
		if err != nil {
			t.Fatal(err)
		}
	}

	// Open before serving, so that the first scrape sees every series.
	ctx := context.Background()
	if err := w.Open(ctx); err != nil {
		t.Fatal(err)
	}
	h, err := w.Handler(worker.HandlerOptions{Gatherer: reg})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/worker/", http.StripPrefix("/worker", h))
	mux.HandleFunc("/hello", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "hello") })
	srv := httptest.NewServer(mux)
	defer srv.Close() // a failed test still stops the server
	if err := w.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if code, body := get(t, srv.URL+"/worker/readyz"); code != 200 {
		t.Fatalf("/worker/readyz after Start: got %d %q, want 200", code, body)
	}
	waitCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for _, job := range []string{"rollup", "expire_sessions", "send_report"} {
		r, err := runs.Wait(waitCtx, job)
		if err != nil {
			t.Fatal(err)
		}
		if r.Result != worker.ResultSuccess {
			t.Fatalf("%s: got %s (%v), want success", job, r.Result, r.Err)
		}
	}

	// The shutdown order: Stop (scheduling stops, runs drain, the history
	// is written), then the program's HTTP server, then Close (the
	// database). Between, /readyz says 503 and /metrics has the last counts.
	if err := w.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if code, body := get(t, srv.URL+"/worker/readyz"); code != 503 || !strings.Contains(body, "shutting down") {
		t.Fatalf("/worker/readyz after Stop: got %d %q, want 503 shutting down", code, body)
	}
	code, metrics := get(t, srv.URL+"/worker/metrics")
	if code != 200 || !strings.Contains(metrics, `worker_job_runs_total{job_name="rollup",result="success"}`) {
		t.Fatalf("/worker/metrics after Stop: got %d, want 200 with rollup's runs\n%s", code, metrics)
	}
	if code, _ := get(t, srv.URL+"/hello"); code != 200 {
		t.Fatalf("/hello: got %d, want 200", code)
	}
	srv.Close()
	if err := w.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}

	db, err := sql.Open("sqlite3", "file:"+dbPath+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, job := range []string{"rollup", "expire_sessions", "send_report"} {
		var n int
		if err := db.QueryRow("SELECT count(*) FROM job_runs WHERE job = ? AND result = 'success'", job).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n < 1 {
			t.Errorf("%s: got %d successful runs in job_runs, want at least 1", job, n)
		}
	}
}

// New refuses what ParseConfig refuses, with the reason ParseConfig gives.
func TestConfigInGo_Refused(t *testing.T) {
	for _, tt := range []struct {
		name  string
		job   worker.JobConfig
		cfg   worker.Config
		yaml  string
		field string
	}{
		{name: "BadName", job: worker.JobConfig{Name: "Bad-Name", Spec: "@hourly", SQL: "SELECT 1"},
			yaml: "jobs:\n  - {name: Bad-Name, schedule: '@hourly', sql: SELECT 1}\n", field: "Config.Jobs[0].Name"},
		{name: "Transaction", job: worker.JobConfig{Name: "purge", Spec: "@hourly", SQL: "BEGIN; SELECT 1; COMMIT"},
			yaml: "jobs:\n  - {name: purge, schedule: '@hourly', sql: 'BEGIN; SELECT 1; COMMIT'}\n", field: "Config.Jobs[0].SQL"},
		{name: "JournalMode", job: worker.JobConfig{Name: "purge", Spec: "@hourly", SQL: "COMMIT; PRAGMA journal_mode=DELETE; BEGIN"},
			yaml: "jobs:\n  - {name: purge, schedule: '@hourly', sql: 'COMMIT; PRAGMA journal_mode=DELETE; BEGIN'}\n", field: "Config.Jobs[0].SQL"},
		{name: "Checkpoint", cfg: worker.Config{Checkpoint: "extrenal"},
			yaml: "database:\n  checkpoint: extrenal\n", field: "Config.Checkpoint"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			if tt.job.Name != "" {
				cfg.Jobs = []worker.JobConfig{tt.job}
			}
			_, err := worker.New(worker.Options{Config: &cfg})
			var ce *worker.ConfigError
			if !errors.As(err, &ce) || ce.Field != tt.field {
				t.Fatalf("New: got %v, want a *worker.ConfigError naming %s", err, tt.field)
			}
			_, yamlErr := worker.ParseConfig([]byte(tt.yaml))
			if yamlErr == nil {
				t.Fatal("ParseConfig: got nil, want an error")
			}
			_, yamlReason, _ := strings.Cut(yamlErr.Error(), ": ")
			if ce.Reason != yamlReason {
				t.Fatalf("reason: got %q from New, want ParseConfig's %q", ce.Reason, yamlReason)
			}
			if !strings.HasSuffix(err.Error(), tt.field+": "+yamlReason) {
				t.Fatalf("New: got %q, want it to end with %s: %s", err, tt.field, yamlReason)
			}
		})
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}
