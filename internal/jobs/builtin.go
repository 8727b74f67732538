package jobs

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sqlworker/worker/internal/db"
	"github.com/sqlworker/worker/internal/jobhistory"
)

// Builtins holds what the built-in jobs need and the gauge quick_check sets.
type Builtins struct {
	Version          string        // recorded by heartbeat
	ReplicaID        string        // heartbeat's row on PostgreSQL (jobhistory.Beat.ReplicaID)
	HistoryRetention time.Duration // history_prune deletes runs that ended before now minus this
	// NoCheckpoint: another process checkpoints the WAL (the config's
	// database.checkpoint: external); wal_checkpoint then refuses to run,
	// with ErrNoCheckpoint, should a config built in Go enable it.
	NoCheckpoint bool
	// HistoryMaxRowsPerJob, when positive, is how many job_runs rows
	// history_prune keeps of each job, the newest (jobhistory.CapRuns); 0 keeps
	// every row the retention keeps.
	HistoryMaxRowsPerJob int
	// Verify, when set, is called by heartbeat before it writes: it checks
	// that the database file is still the one open (db.Handle.Verify), so a
	// removed or replaced file fails the heartbeat instead of taking its
	// writes into an unlinked file.
	Verify func() error
	// PruneClaims, when set (on PostgreSQL: claim.Prune), is called by
	// history_prune with the retention, so that the per-tick claims of
	// replicas are kept as long as the runs.
	PruneClaims func(ctx context.Context, db *sql.DB, olderThan time.Duration) (int64, error)

	started       time.Time
	quickCheckOK  prometheus.Gauge
	quickCheckRan atomic.Bool
}

// NewBuiltins returns the built-in jobs' bodies. Register the Builtins as a
// collector to export worker_db_quick_check_ok.
func NewBuiltins(namespace, version string, retention time.Duration) *Builtins {
	if namespace == "" {
		namespace = DefaultNamespace
	}
	return &Builtins{
		Version:          version,
		HistoryRetention: retention,
		started:          time.Now(),
		quickCheckOK: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: "db", Name: "quick_check_ok",
			Help: "1 when the last PRAGMA quick_check said ok, 0 when it found a problem.",
		}),
	}
}

var _ prometheus.Collector = (*Builtins)(nil)

// Describe implements prometheus.Collector.
func (b *Builtins) Describe(ch chan<- *prometheus.Desc) { b.quickCheckOK.Describe(ch) }

// Collect implements prometheus.Collector. worker_db_quick_check_ok is
// exported only once quick_check has run, so that "never checked" cannot
// read as either "ok" or "corrupt".
func (b *Builtins) Collect(ch chan<- prometheus.Metric) {
	if b.quickCheckRan.Load() {
		b.quickCheckOK.Collect(ch)
	}
}

// The built-in jobs' names, also their keys under builtin: in the config.
const (
	Heartbeat     = "heartbeat"
	WALCheckpoint = "wal_checkpoint"
	Optimize      = "optimize"
	QuickCheck    = "quick_check"
	HistoryPrune  = "history_prune"
)

// BuiltinJob is one built-in job: its name, its production schedule and
// timeout, whether it also runs once at start, and its body.
type BuiltinJob struct {
	Name    string
	Spec    string
	Timeout time.Duration
	// RunAtStart: the job also runs once when the scheduler starts
	// (Job.RunAtStart), so that what it exports has a value within
	// seconds rather than after its first interval.
	RunAtStart bool
	// SQLiteOnly: the job is SQLite's own (a PRAGMA), and is not offered
	// on PostgreSQL, where the server checkpoints, plans and checks itself.
	SQLiteOnly bool
	// PerReplica: the job runs on every replica, never claimed
	// (Job.PerReplica): the heartbeat, which readiness reads.
	PerReplica bool
	body       func(b *Builtins) Func
}

// BuiltinJobs lists the built-in jobs in a stable order. It is the one
// place a built-in is defined: the config takes its names, YAML keys and
// defaults from here, and the tests their fixtures.
var BuiltinJobs = []BuiltinJob{
	// On every replica: each replica's readiness and beat_at row are its own.
	{Heartbeat, "@every 10s", 5 * time.Second, false, false, true, func(b *Builtins) Func { return b.heartbeat }},
	{WALCheckpoint, "@every 5m", time.Minute, false, true, false, func(b *Builtins) Func { return b.walCheckpoint }},
	{Optimize, "@hourly", 5 * time.Minute, false, true, false, func(*Builtins) Func { return optimize }},
	// At start too: worker_db_quick_check_ok is absent until the first run.
	{QuickCheck, "@every 15m", 5 * time.Minute, true, true, false, func(b *Builtins) Func { return b.quickCheck }},
	{HistoryPrune, "@hourly", time.Minute, false, false, false, func(b *Builtins) Func { return b.historyPrune }},
}

// SQLiteOnly reports whether the named built-in job is SQLite's own.
func SQLiteOnly(name string) bool { return builtinJob(name).SQLiteOnly }

// PerReplica reports whether the named built-in job runs on every replica.
func PerReplica(name string) bool { return builtinJob(name).PerReplica }

// builtinJob returns the named built-in job; the zero BuiltinJob for
// another name.
func builtinJob(name string) BuiltinJob {
	for _, j := range BuiltinJobs {
		if j.Name == name {
			return j
		}
	}
	return BuiltinJob{}
}

// Func returns the body of the named built-in job.
func (b *Builtins) Func(name string) (Func, error) {
	for _, j := range BuiltinJobs {
		if j.Name == name {
			return j.body(b), nil
		}
	}
	return nil, fmt.Errorf("%w: %q is not a built-in job", ErrUnknownJob, name)
}

// heartbeat upserts the worker's liveness row.
func (b *Builtins) heartbeat(ctx context.Context, sdb *sql.DB) (int64, error) {
	if b.Verify != nil {
		if err := b.Verify(); err != nil {
			return 0, err
		}
	}
	host, _ := os.Hostname()
	return jobhistory.WriteHeartbeat(ctx, sdb, jobhistory.Beat{
		ReplicaID: b.ReplicaID, PID: os.Getpid(), Hostname: host, Version: b.Version, StartedAt: b.started, BeatAt: time.Now(),
	})
}

// Errors of wal_checkpoint.
var (
	// ErrCheckpointBusy is returned when readers kept a checkpoint from
	// finishing.
	ErrCheckpointBusy = errors.New("wal checkpoint could not complete: database busy")
	// ErrNoCheckpoint is returned, without a checkpoint, under NoCheckpoint.
	ErrNoCheckpoint = errors.New("wal checkpoint refused: another process checkpoints the WAL (database.checkpoint: external)")
)

// walCheckpoint copies the WAL into the database and truncates it, so that
// the WAL cannot grow without bound. The config refuses it under
// database.checkpoint: external (db.CheckpointExternal). A TRUNCATE checkpoint reports 0 frames
// once done, so a PASSIVE one goes first to count them; it does the copying,
// and the TRUNCATE that follows only resets the file.
func (b *Builtins) walCheckpoint(ctx context.Context, db *sql.DB) (int64, error) {
	if b.NoCheckpoint {
		return 0, ErrNoCheckpoint
	}
	var busy, logFrames, checkpointed int64
	if err := db.QueryRowContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &logFrames, &checkpointed); err != nil {
		return 0, err
	}
	if err := db.QueryRowContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)").Scan(&busy, new(int64), new(int64)); err != nil {
		return checkpointed, err
	}
	if busy != 0 {
		return checkpointed, ErrCheckpointBusy
	}
	return checkpointed, nil
}

// optimize lets SQLite refresh the statistics its query planner uses. The
// 0x10000 bit checks every table, not only those this connection queried:
// the worker's connections rarely run the application's queries.
// PRAGMA optimize may run ANALYZE, which reads and then writes; outside a
// transaction that read-to-write upgrade fails with SQLITE_BUSY at once when
// another connection wrote in between, without waiting for busy_timeout.
// BEGIN IMMEDIATE (the DSN's _txlock) takes the write lock first, waiting.
func optimize(ctx context.Context, db *sql.DB) (int64, error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, "PRAGMA optimize=0x10002"); err != nil {
		return 0, err
	}
	return 0, tx.Commit()
}

// ErrQuickCheck is returned when PRAGMA quick_check finds a problem.
var ErrQuickCheck = errors.New("quick_check found problems")

// quickCheck runs PRAGMA quick_check and exports its verdict.
func (b *Builtins) quickCheck(ctx context.Context, db *sql.DB) (int64, error) {
	rows, err := db.QueryContext(ctx, "PRAGMA quick_check")
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	var problems []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			return 0, err
		}
		if line != "ok" {
			problems = append(problems, line)
		}
	}
	if err := rows.Err(); err != nil {
		return 0, err
	}
	if len(problems) > 0 {
		b.quickCheckOK.Set(0)
		b.quickCheckRan.Store(true)
		return int64(len(problems)), fmt.Errorf("%w: %s", ErrQuickCheck, strings.Join(problems[:min(3, len(problems))], "; "))
	}
	b.quickCheckOK.Set(1)
	b.quickCheckRan.Store(true)
	return 0, nil
}

// historyPrune deletes runs that ended before the retention, on PostgreSQL
// the heartbeat rows of replicas that have not beaten for
// jobhistory.HeartbeatRetentions retentions, then, with a row cap, each job's oldest
// rows beyond it; it reports the rows deleted.
func (b *Builtins) historyPrune(ctx context.Context, sdb *sql.DB) (int64, error) {
	now := time.Now()
	n, err := jobhistory.PruneRuns(ctx, sdb, now.Add(-b.HistoryRetention))
	if err != nil {
		return n, err
	}
	if b.PruneClaims != nil {
		claims, err := b.PruneClaims(ctx, sdb, b.HistoryRetention)
		n += claims
		if err != nil {
			return n, err
		}
	}
	if b.HistoryRetention <= math.MaxInt64/jobhistory.HeartbeatRetentions { // else no row is that old
		beats, err := jobhistory.PruneHeartbeats(ctx, sdb, now.Add(-jobhistory.HeartbeatRetentions*b.HistoryRetention))
		n += beats
		if err != nil {
			return n, err
		}
	}
	if b.HistoryMaxRowsPerJob <= 0 {
		return n, err
	}
	capped, err := jobhistory.CapRuns(ctx, sdb, b.HistoryMaxRowsPerJob)
	return n + capped, err
}

// SQLFunc returns the body of a user job: its SQL, one or more statements,
// run in one transaction. It reports the rows changed by all statements:
// on SQLite from total_changes(), on PostgreSQL summed over the statements'
// command tags (db.ExecPostgres).
func SQLFunc(query string) Func {
	return func(ctx context.Context, sdb *sql.DB) (int64, error) {
		if db.IsPostgres(sdb) {
			return db.ExecPostgres(ctx, sdb, query)
		}
		return sqliteSQL(ctx, sdb, query)
	}
}

func sqliteSQL(ctx context.Context, db *sql.DB, query string) (int64, error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	// Exec reports only the last statement's changes; total_changes()
	// counts all of them on this connection.
	var before, after int64
	if err := tx.QueryRowContext(ctx, "SELECT total_changes()").Scan(&before); err != nil {
		return 0, err
	}
	if _, err := tx.ExecContext(ctx, query); err != nil {
		return 0, err
	}
	if err := tx.QueryRowContext(ctx, "SELECT total_changes()").Scan(&after); err != nil {
		return 0, err
	}
	return after - before, tx.Commit()
}
