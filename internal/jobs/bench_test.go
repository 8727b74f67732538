package jobs_test

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sqlworker/worker/internal/db"
	"github.com/sqlworker/worker/internal/floorbench"
	"github.com/sqlworker/worker/internal/jobhistory"
	"github.com/sqlworker/worker/internal/jobs"
	"github.com/sqlworker/worker/internal/workertest"
	"github.com/sqlworker/worker/sqlcount"
)

// benchSQL is the load test's job: two statements in one transaction.
var benchSQL = []string{
	"CREATE TABLE IF NOT EXISTS load_events (job TEXT NOT NULL, at TEXT NOT NULL)",
	"INSERT INTO load_events VALUES ('load', strftime('%Y-%m-%dT%H:%M:%fZ'))",
}

// BenchmarkRun measures one run of a SQL job through the whole chain
// (scheduling bookkeeping, metrics, log, history) against its floor: the
// same two write transactions, the job's statements and then the job_runs
// insert, on go-sqlite3 directly with the worker's pragmas and every
// statement prepared once. With 1, 100 and 1,000 jobs configured, run in
// turn, each once before the measurement.
func BenchmarkRun(b *testing.B) {
	for _, n := range []int{1, 100, 1000} {
		b.Run(fmt.Sprintf("jobs=%d", n), func(b *testing.B) {
			floor := newRunFloor(b)
			s, names := newRunScheduler(b, n)
			i := 0
			floorbench.Pair(b, func(b *testing.B) { floor.run(b) }, func(*testing.B) {
				s.RunScheduled(names[i%n])
				i++
			})
		})
	}
}

func newRunScheduler(b *testing.B, n int) (*jobs.Scheduler, []string) {
	h := workertest.MustOpenHandle(b)
	names := make([]string, n)
	list := make([]jobs.Job, n)
	sqlText := benchSQL[0] + ";\n" + benchSQL[1] + ";\n"
	for i := range list {
		names[i] = fmt.Sprintf("load_%04d", i)
		list[i] = mustSchedule(b, "* * * * * *")
		list[i].Name, list[i].Func = names[i], jobs.SQLFunc(sqlText)
	}
	s, err := jobs.New(jobs.Config{
		DB:         h,
		Registerer: prometheus.NewRegistry(),
		// As the daemon's default log level: the per-run Debug line is off.
		Logger: slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo})),
	}, list)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Stop(context.Background()) })
	// Steady state: a job's first run on a handle also prepares its
	// statements, once.
	for _, name := range names {
		s.RunScheduled(name)
	}
	return s, names
}

type runFloor struct {
	db     *sql.DB
	job    []*sql.Stmt
	insert *sql.Stmt
}

func newRunFloor(b *testing.B) *runFloor {
	// The worker's schema (migrated by a Handle) and DSN, on the raw driver.
	h := db.New(db.Config{Path: filepath.Join(b.TempDir(), "floor.db")})
	if _, err := h.Init(context.Background()); err != nil {
		b.Fatal(err)
	}
	dsn := h.DSN()
	if err := h.Close(context.Background()); err != nil {
		b.Fatal(err)
	}
	d, err := sql.Open("sqlite3", dsn)
	if err != nil {
		b.Fatal(err)
	}
	d.SetMaxOpenConns(db.DefaultMaxOpenConns)
	b.Cleanup(func() { d.Close() })
	f := &runFloor{db: d}
	for _, q := range benchSQL {
		if _, err := d.Exec(q); err != nil { // the table must exist to prepare the INSERT
			b.Fatal(err)
		}
		st, err := d.Prepare(q)
		if err != nil {
			b.Fatal(err)
		}
		f.job = append(f.job, st)
	}
	if f.insert, err = d.Prepare(`INSERT INTO job_runs
		(job, scheduled_at, started_at, ended_at, result, error, rows_affected) VALUES (?, ?, ?, ?, ?, ?, ?)`); err != nil {
		b.Fatal(err)
	}
	return f
}

func (f *runFloor) run(b *testing.B) {
	ctx := context.Background()
	start := time.Now()
	tx, err := f.db.BeginTx(ctx, nil)
	if err != nil {
		b.Fatal(err)
	}
	var rows int64
	for _, st := range f.job {
		res, err := tx.StmtContext(ctx, st).ExecContext(ctx)
		if err != nil {
			b.Fatal(err)
		}
		n, _ := res.RowsAffected()
		rows += n
	}
	if err := tx.Commit(); err != nil {
		b.Fatal(err)
	}
	end := time.Now()
	if _, err := f.insert.ExecContext(ctx, "load", jobhistory.FormatTime(start), jobhistory.FormatTime(start), jobhistory.FormatTime(end),
		"success", "", rows); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkRunOrigins measures what sqlcount's origins cost a job run:
// "worker" is the run with them on (the default: handles and connections),
// its "floor" the same run with them off (db.SetOrigins()); with
// pprof=false the origins are kept for the Go API only, as the daemon
// without --web.enable-pprof does (sqlcount.SetProfiles(false)), with
// pprof=true they go into the pprof profiles too. Two jobs: shared, the SQL
// job of BenchmarkRun on the worker's handle, whose pooled connections are
// reused, so a run records nothing; and open-per-run, a Go job that opens a
// handle on the counting driver, pings it and closes it, so each run
// records and forgets a handle and a connection, the most a run can cost.
// The target: x-floor at most 1.05.
func BenchmarkRunOrigins(b *testing.B) {
	defer db.SetOrigins(sqlcount.DefaultOrigins...)
	defer sqlcount.SetProfiles(true)
	for _, job := range []string{"shared", "open-per-run"} {
		for _, pprof := range []bool{false, true} {
			b.Run(fmt.Sprintf("job=%s/pprof=%v", job, pprof), func(b *testing.B) {
				sqlcount.SetProfiles(pprof)
				s, name := newOriginsScheduler(b, job)
				floorbench.Pair(b, func(*testing.B) {
					db.SetOrigins()
					s.RunScheduled(name)
				}, func(*testing.B) {
					db.SetOrigins(sqlcount.DefaultOrigins...)
					s.RunScheduled(name)
				})
			})
		}
	}
}

func newOriginsScheduler(b *testing.B, job string) (*jobs.Scheduler, string) {
	if job == "shared" {
		s, names := newRunScheduler(b, 1)
		return s, names[0]
	}
	h := workertest.MustOpenHandle(b)
	dsn := h.DSN()
	j := mustSchedule(b, "* * * * * *")
	j.Name = "open_per_run"
	j.Func = func(ctx context.Context, _ *sql.DB) (int64, error) {
		d, err := sql.Open(db.DriverName, dsn)
		if err != nil {
			return 0, err
		}
		defer d.Close()
		return 0, d.PingContext(ctx)
	}
	s, err := jobs.New(jobs.Config{
		DB:         h,
		Registerer: prometheus.NewRegistry(),
		Logger:     slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo})),
	}, []jobs.Job{j})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Stop(context.Background()) })
	s.RunScheduled(j.Name)
	return s, j.Name
}
