package worker_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sqlworker/worker"
)

// Ensure New refuses a Config built in Go for what ParseConfig refuses in
// a file, with the same reason, naming the Go field and the job.
func TestNew_ConfigRefused(t *testing.T) {
	for _, tt := range []struct {
		name string
		cfg  worker.Config
		yaml string // the same setting in a file
		want string
	}{
		{"BadName", worker.Config{Jobs: []worker.JobConfig{{Name: "Bad-Name", Spec: "@hourly", SQL: "SELECT 1"}}},
			"jobs:\n  - {name: Bad-Name, schedule: '@hourly', sql: SELECT 1}\n",
			`worker: Config.Jobs[0].Name: "Bad-Name" must be lower case letters, digits and _, starting with a letter, at most 63 characters`},
		{"Transaction", worker.Config{Jobs: []worker.JobConfig{{Name: "purge", Spec: "@hourly", SQL: "BEGIN; SELECT 1; COMMIT"}}},
			"jobs:\n  - {name: purge, schedule: '@hourly', sql: 'BEGIN; SELECT 1; COMMIT'}\n",
			`worker: job "purge": Config.Jobs[0].SQL: statement 1 (BEGIN) starts a transaction inside the job's; the worker runs each job's SQL in one transaction`},
		{"JournalMode", worker.Config{Jobs: []worker.JobConfig{{Name: "purge", Spec: "@hourly", SQL: "COMMIT; PRAGMA journal_mode=DELETE; BEGIN"}}},
			"jobs:\n  - {name: purge, schedule: '@hourly', sql: 'COMMIT; PRAGMA journal_mode=DELETE; BEGIN'}\n",
			`worker: job "purge": Config.Jobs[0].SQL: statement 1 (COMMIT) ends the job's transaction; the worker commits after the last statement`},
		{"Checkpoint", worker.Config{Checkpoint: "extrenal"}, "database:\n  checkpoint: extrenal\n",
			`worker: Config.Checkpoint: must be worker or external, got "extrenal"`},
		{"NoSchedule", worker.Config{Jobs: []worker.JobConfig{{Name: "purge_events", SQL: "SELECT 1"}}},
			"jobs:\n  - {name: purge_events, sql: SELECT 1}\n",
			`worker: job "purge_events": Config.Jobs[0].Spec: must not be empty`},
		{"BuiltinSQL", worker.Config{Jobs: []worker.JobConfig{{Name: "optimize", Builtin: true, SQL: "SELECT 1"}}},
			"builtin:\n  optimize: {sql: SELECT 1}\n",
			`worker: job "optimize": Config.Jobs[0].SQL: built-in jobs take no SQL; add a job under jobs instead`},
		{"Duplicate", worker.Config{Jobs: []worker.JobConfig{{Name: "a", Spec: "@hourly"}, {Name: "a", Spec: "@daily"}}},
			"jobs:\n  - {name: a, schedule: '@hourly'}\n  - {name: a, schedule: '@daily'}\n",
			`worker: Config.Jobs[1].Name: duplicate job name "a" (also jobs[0])`},
		{"Jitter", worker.Config{Jobs: []worker.JobConfig{{Name: "a", Spec: "@every 1m", SQL: "SELECT 1", Jitter: time.Minute}}},
			"jobs:\n  - {name: a, schedule: '@every 1m', sql: SELECT 1, jitter: 1m}\n",
			`worker: job "a": Config.Jobs[0].Jitter: must be less than the schedule's interval (1m0s), got 1m0s`},
		{"ShutdownGrace", worker.Config{ShutdownGrace: -time.Second}, "scheduler:\n  shutdown_grace: -1s\n",
			`worker: Config.ShutdownGrace: must be positive, got -1s`},
		{"Lease", worker.Config{Lease: time.Minute}, "scheduler:\n  lease: 1m\n",
			`worker: Config.Lease: is for replicas on PostgreSQL; not offered on SQLite, where one worker runs every tick (set database.url, or remove it)`},
		{"CatchUp", worker.Config{Jobs: []worker.JobConfig{{Name: "a", Spec: "@hourly", SQL: "SELECT 1", CatchUp: worker.CatchUpAll, OmitSuccessRows: true}}},
			"jobs:\n  - {name: a, schedule: '@hourly', sql: SELECT 1, catch_up: all, record_successes: false}\n",
			`worker: job "a": Config.Jobs[0].CatchUp: all needs record_successes: true: the last tick is read from job_runs, which keeps no successes under record_successes: false`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := worker.New(worker.Options{Config: &tt.cfg})
			if err == nil || err.Error() != tt.want {
				t.Fatalf("got %v, want %s", err, tt.want)
			}
			_, yamlErr := worker.ParseConfig([]byte(tt.yaml))
			var ce *worker.ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("got %T, want a *worker.ConfigError", err)
			}
			if yamlErr == nil || !strings.HasSuffix(yamlErr.Error(), ": "+ce.Reason) || ce.Err.Error() != yamlErr.Error() {
				t.Fatalf("ParseConfig: got %v, want the reason %q (and ConfigError.Err %v)", yamlErr, ce.Reason, ce.Err)
			}
		})
	}
}

// Ensure the zero values of a Config built in Go mean the documented
// defaults, a negative Timeout no bound, and the built-in jobs left out
// run on their production schedules.
func TestNew_ConfigDefaults(t *testing.T) {
	cfg := &worker.Config{
		DBPath: filepath.Join(t.TempDir(), "app.db"),
		Jobs: []worker.JobConfig{
			{Name: "quick_check", Builtin: true, Disabled: true},
			{Name: "rollup", Spec: "@every 5m", SQL: "SELECT 1"},
			{Name: "unbounded", Spec: "@hourly", SQL: "SELECT 1", Timeout: -1},
			{Name: "paused", Spec: "@hourly", SQL: "SELECT 1", Disabled: true},
		},
	}
	w, _ := MustNewWorker(t, cfg)
	list, err := w.Jobs()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, j := range list {
		got = append(got, fmt.Sprintf("%s %s %s %s %t %s %s", j.Name, j.Kind, j.Spec, j.Timeout, j.Enabled, j.CatchUp, j.DST))
	}
	want := []string{
		"heartbeat builtin @every 10s 5s true skip cron",
		"wal_checkpoint builtin @every 5m 1m0s true skip cron",
		"optimize builtin @hourly 5m0s true skip cron",
		"quick_check builtin @every 15m 5m0s false skip cron",
		"history_prune builtin @hourly 1m0s true skip cron",
		"rollup sql @every 5m 1m0s true skip cron",
		"unbounded sql @hourly 0s true skip cron",
		"paused sql @hourly 1m0s false skip cron",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("jobs:\ngot  %q\nwant %q", got, want)
	}
	if cfg.Jobs[1].Timeout != 0 || cfg.MaxOpenConns != 0 {
		t.Fatalf("New changed the caller's Config: %+v", cfg)
	}
}

// Ensure Reload refuses a Config built in Go as New does, keeping the old
// one running.
func TestWorker_Reload_ConfigRefused(t *testing.T) {
	cfg := &worker.Config{DBPath: filepath.Join(t.TempDir(), "app.db")}
	w, _ := MustNewWorker(t, cfg)
	if err := w.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	err := w.Reload(func() (*worker.Config, error) {
		return &worker.Config{DBPath: cfg.DBPath, Jobs: []worker.JobConfig{{Name: "x", Spec: "@hourly", SQL: "VACUUM"}}}, nil
	})
	want := `worker: job "x": Config.Jobs[0].SQL: statement 1 (VACUUM) cannot run inside the job's transaction`
	if err == nil || err.Error() != want {
		t.Fatalf("got %v, want %s", err, want)
	}
	list, err := w.Jobs()
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range list {
		if j.Name == "x" {
			t.Fatalf("the refused job is in Jobs: %+v", j)
		}
	}
}

// Ensure an option a user writes with NewJobOption sets the job's
// settings, its error is Register's naming the option and the job, and
// what the options leave is checked as a config entry is.
func TestWorker_Register_UserOption(t *testing.T) {
	nop := func(context.Context, *sql.DB) (int64, error) { return 0, nil }
	w, _ := MustNewWorker(t, MustParseConfig(t, ""))
	quiet := worker.NewJobOption("Quiet", func(j *worker.JobConfig) error {
		j.OmitSuccessRows, j.Retries = true, 2
		return nil
	})
	if err := w.Register("quiet", "@hourly", nop, quiet, worker.WithTimeout(0)); err != nil {
		t.Fatal(err)
	}
	list, err := w.Jobs()
	if err != nil {
		t.Fatal(err)
	}
	if j := list[len(list)-1]; j.Name != "quiet" || j.Retries != 2 || j.Timeout != 0 || !j.Enabled {
		t.Fatalf("got %+v, want quiet with 2 retries and no timeout", j)
	}
	for _, tt := range []struct {
		name string
		opt  worker.JobOption
		want string
	}{
		{"Error", worker.NewJobOption("WithOwner", func(*worker.JobConfig) error { return errors.New("no owner") }),
			`worker: job "bad": WithOwner: no owner`},
		{"Checked", worker.NewJobOption("TooMany", func(j *worker.JobConfig) error { j.Retries = 50; return nil }),
			`worker: job "bad": JobConfig.Retries: must be between 0 and 10, got 50`},
		{"Renamed", worker.NewJobOption("Rename", func(j *worker.JobConfig) error { j.SQL = "SELECT 1"; return nil }),
			`worker: job "bad": an option changed its Name, Builtin, SQL or Spec, which are Register's`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := w.Register("bad", "@hourly", nop, tt.opt); err == nil || err.Error() != tt.want {
				t.Fatalf("got %v, want %s", err, tt.want)
			}
		})
	}
}

// Ensure DefaultConfig takes DBURL or CheckpointExternal without another
// change, and a wal_checkpoint listed enabled under CheckpointExternal is
// refused naming Disabled.
func TestDefaultConfig_Checkpoint(t *testing.T) {
	cfg := worker.DefaultConfig()
	cfg.DBPath = filepath.Join(t.TempDir(), "app.db")
	cfg.Checkpoint = worker.CheckpointExternal
	w, _ := MustNewWorker(t, cfg)
	list, err := w.Jobs()
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range list {
		if j.Name == worker.BuiltinWALCheckpoint && j.Enabled {
			t.Fatalf("wal_checkpoint under CheckpointExternal: got enabled, want disabled")
		}
	}
	cfg.Jobs = []worker.JobConfig{{Name: worker.BuiltinWALCheckpoint, Builtin: true}}
	_, err = worker.New(worker.Options{Config: cfg})
	want := `worker: job "wal_checkpoint": Config.Jobs[0].Disabled: must be true under database.checkpoint: external, where another process (Litestream) checkpoints the WAL`
	if err == nil || err.Error() != want {
		t.Fatalf("got %v, want %s", err, want)
	}
}
