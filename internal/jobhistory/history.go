// Package jobhistory writes and reads the rows the worker keeps about its
// jobs, on either backend: the runs (job_runs), each replica's heartbeat,
// and the pauses (job_pauses).
package jobhistory

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/sqlworker/worker/internal/db"
)

// The worker's own tables, job_runs, heartbeat and job_pauses, are created
// by the migrations of internal/schema, repaired by its Repair and written
// here only: their columns and their time format have this one owner. Each
// statement is written once, with ? placeholders; bind turns them into
// PostgreSQL's $n on a pool of pgx's. Times are passed
// as TimeFormat text either way: SQLite stores it, PostgreSQL parses it into
// its timestamptz columns.

// isPostgres reports whether d is a pool of pgx's, whose placeholders are
// $n.
func isPostgres(d *sql.DB) bool { return db.IsPostgres(d) }

// bind returns q for d's engine: ? placeholders become $1, $2, ... on
// PostgreSQL. q must have no ? but its placeholders.
func bind(d *sql.DB, q string) string {
	if !isPostgres(d) {
		return q
	}
	var b strings.Builder
	n := 0
	for _, r := range q {
		if r == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// TimeFormat is how times are stored in the worker's tables: UTC, fixed
// width, so that text order is time order.
const TimeFormat = "2006-01-02T15:04:05.000Z"

// FormatTime formats t in TimeFormat.
func FormatTime(t time.Time) string { return t.UTC().Format(TimeFormat) }

// RunRow is a job_runs row: a finished run, with its own times, so that a
// row written late says when the run happened, not when it was written.
type RunRow struct {
	Job                             string
	ScheduledAt, StartedAt, EndedAt time.Time
	Result                          string // one of the CHECK constraint's results
	Error                           string // "" for none
	RowsAffected                    int64
	Attempt                         int           // 1 for a run's first attempt, 2 for its first retry, ...; 0 is stored as 1
	Jitter                          time.Duration // the random delay before the run started; stored in whole milliseconds
}

// InsertRuns writes rows to job_runs with one statement, so that they are
// written whole or not at all.
func InsertRuns(ctx context.Context, db *sql.DB, rows []RunRow) error {
	_, err := db.ExecContext(ctx, bind(db, insertRunsSQL(len(rows))), runArgs(rows)...)
	return err
}

// insertRunsSQL is the INSERT of n job_runs rows.
func insertRunsSQL(n int) string {
	var b strings.Builder
	b.WriteString(`INSERT INTO job_runs
		(job, scheduled_at, started_at, ended_at, result, error, rows_affected, attempt, jitter_ms) VALUES `)
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("(?, ?, ?, ?, ?, ?, ?, ?, ?)")
	}
	return b.String()
}

func runArgs(rows []RunRow) []any {
	args := make([]any, 0, 9*len(rows))
	for _, r := range rows {
		args = append(args, r.Job, FormatTime(r.ScheduledAt), FormatTime(r.StartedAt), FormatTime(r.EndedAt),
			r.Result, r.Error, r.RowsAffected, max(1, r.Attempt), r.Jitter.Milliseconds())
	}
	return args
}

// InsertRunWhereSQL returns, for PostgreSQL, an INSERT of one job_runs row
// that writes it only when cond holds: the INSERT ... SELECT a
// data-modifying CTE of another statement runs, so that the row is written
// in the same statement (and commit) as what cond reads, the claim's finish
// of package claim. Its parameters are $first to $first+8, given by
// RunArgs(row); the casts type them as the columns are.
func InsertRunWhereSQL(first int, cond string) string {
	p := func(i int, typ string) string { return "$" + strconv.Itoa(first+i) + "::" + typ }
	return `INSERT INTO job_runs
		(job, scheduled_at, started_at, ended_at, result, error, rows_affected, attempt, jitter_ms)
	SELECT ` + p(0, "text") + `, ` + p(1, "timestamptz") + `, ` + p(2, "timestamptz") + `, ` + p(3, "timestamptz") + `, ` +
		p(4, "text") + `, ` + p(5, "text") + `, ` + p(6, "bigint") + `, ` + p(7, "integer") + `, ` + p(8, "bigint") + `
	WHERE ` + cond
}

// RunArgs returns the parameters of row for InsertRunWhereSQL.
func RunArgs(row RunRow) []any { return runArgs([]RunRow{row}) }

// RunInserter is InsertRuns with the one-row INSERT, the one every finished
// run writes, prepared once per handle rather than parsed on every run (on
// PostgreSQL, pgx caches the server-side statement either way). It
// is not safe for concurrent use: its caller writes one batch at a time.
type RunInserter struct {
	db  *sql.DB
	one *sql.Stmt
}

// Insert is InsertRuns(ctx, db, rows). A db other than the last one's (the
// handle was replaced) is prepared afresh.
func (w *RunInserter) Insert(ctx context.Context, db *sql.DB, rows []RunRow) error {
	if len(rows) != 1 {
		return InsertRuns(ctx, db, rows)
	}
	if w.db != db {
		w.Close()
		st, err := db.PrepareContext(ctx, bind(db, insertRunsSQL(1)))
		if err != nil {
			return err
		}
		w.db, w.one = db, st
	}
	_, err := w.one.ExecContext(ctx, runArgs(rows)...)
	return err
}

// Close releases the prepared statement; the RunInserter may be used
// again. It is safe to call more than once.
func (w *RunInserter) Close() error {
	if w.one == nil {
		return nil
	}
	err := w.one.Close()
	w.db, w.one = nil, nil
	return err
}

// LastScheduled returns the newest scheduled_at of the job's job_runs rows,
// and false when it has none: the last tick the job ran for, which catch-up
// counts missed ticks from. It is one seek in job_runs_job_scheduled.
func LastScheduled(ctx context.Context, db *sql.DB, job string) (time.Time, bool, error) {
	// TimeFormat text from SQLite, a time.Time from PostgreSQL's timestamptz.
	var v any
	if err := db.QueryRowContext(ctx, bind(db, "SELECT max(scheduled_at) FROM job_runs WHERE job = ?"), job).Scan(&v); err != nil {
		return time.Time{}, false, err
	}
	switch v := v.(type) {
	case nil:
		return time.Time{}, false, nil
	case time.Time:
		return v.UTC(), true, nil
	case string:
		t, err := time.Parse(TimeFormat, v)
		if err != nil {
			return time.Time{}, false, fmt.Errorf("job_runs.scheduled_at of job %q: %w", job, err)
		}
		return t, true, nil
	default:
		return time.Time{}, false, fmt.Errorf("job_runs.scheduled_at of job %q: a %T", job, v)
	}
}

// PruneRuns deletes the job_runs rows of runs that ended before cutoff and
// returns how many it deleted.
func PruneRuns(ctx context.Context, db *sql.DB, cutoff time.Time) (int64, error) {
	res, err := db.ExecContext(ctx, bind(db, "DELETE FROM job_runs WHERE ended_at < ?"), FormatTime(cutoff))
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// CapRuns deletes, for every job in job_runs, its oldest rows beyond the
// newest keep (by started_at, then id) and returns how many it deleted; keep
// must be positive. It is a bounded loop, one DELETE per job, each walking
// the job's rows backwards through the index job_runs_job_started, so that
// the write lock is held for one job's rows at a time.
func CapRuns(ctx context.Context, db *sql.DB, keep int) (int64, error) {
	if keep <= 0 {
		return 0, fmt.Errorf("cannot cap job_runs: want a positive row count, got %d", keep)
	}
	rows, err := db.QueryContext(ctx, bind(db, "SELECT job FROM job_runs GROUP BY job HAVING count(*) > ?"), keep)
	if err != nil {
		return 0, err
	}
	var over []string
	for rows.Next() {
		var job string
		if err := rows.Scan(&job); err != nil {
			rows.Close()
			return 0, err
		}
		over = append(over, job)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	// No limit is LIMIT -1 to SQLite, LIMIT ALL to PostgreSQL.
	all := "-1"
	if isPostgres(db) {
		all = "ALL"
	}
	del := bind(db, `DELETE FROM job_runs WHERE id IN (
		SELECT id FROM job_runs WHERE job = ? ORDER BY started_at DESC, id DESC LIMIT `+all+` OFFSET ?)`)
	var deleted int64
	for _, job := range over {
		res, err := db.ExecContext(ctx, del, job, keep)
		if err != nil {
			return deleted, err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return deleted, err
		}
		deleted += n
	}
	return deleted, nil
}

// Beat is a heartbeat row: which worker process is alive. SQLite's
// heartbeat has one row (id 1); PostgreSQL's one per replica, keyed by
// ReplicaID.
type Beat struct {
	ReplicaID string // PostgreSQL's key; unused on SQLite
	PID       int
	Hostname  string
	Version   string
	StartedAt time.Time // of the process
	BeatAt    time.Time
}

// WriteHeartbeat upserts the heartbeat row (of b.ReplicaID on PostgreSQL)
// and returns the rows changed.
func WriteHeartbeat(ctx context.Context, db *sql.DB, b Beat) (int64, error) {
	var id any = 1
	if isPostgres(db) {
		if b.ReplicaID == "" {
			return 0, errors.New("cannot write heartbeat: no replica id")
		}
		id = b.ReplicaID
	}
	res, err := db.ExecContext(ctx, bind(db, `INSERT INTO heartbeat (id, pid, hostname, version, started_at, beat_at)
		VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET pid = excluded.pid, hostname = excluded.hostname,
			version = excluded.version, started_at = excluded.started_at, beat_at = excluded.beat_at`),
		id, b.PID, b.Hostname, b.Version, FormatTime(b.StartedAt), FormatTime(b.BeatAt))
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// HeartbeatRetentions is how many history retentions a replica's heartbeat
// row outlives its last beat, on PostgreSQL, before history_prune deletes
// it: rows of replicas gone for good (a replica id is the host and pid by
// default, new at every start) would otherwise pile up for ever. A live
// replica's row comes back at its next beat.
const HeartbeatRetentions = 7

// PruneHeartbeats deletes the heartbeat rows that have not beaten since
// cutoff and returns how many it deleted. On SQLite it deletes nothing:
// the one row is this worker's.
func PruneHeartbeats(ctx context.Context, db *sql.DB, cutoff time.Time) (int64, error) {
	if !isPostgres(db) {
		return 0, nil
	}
	res, err := db.ExecContext(ctx, "DELETE FROM heartbeat WHERE beat_at < $1", FormatTime(cutoff))
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// duplicateTicksSQL counts, per job, the ticks (job, scheduled_at) that
// have more than one success row: a tick that ran twice. The index on
// (job, scheduled_at) serves the grouping.
const duplicateTicksSQL = `SELECT job, count(*) FROM (
	SELECT job, scheduled_at FROM job_runs WHERE result = 'success'
	GROUP BY job, scheduled_at HAVING count(*) > 1) d
GROUP BY job`

// DuplicateTicks returns, by job, how many ticks of job_runs have more
// than one success row; jobs without such a tick are left out.
func DuplicateTicks(ctx context.Context, db *sql.DB) (map[string]int, error) {
	rows, err := db.QueryContext(ctx, duplicateTicksSQL)
	if err != nil {
		return nil, fmt.Errorf("cannot count duplicated ticks: %w", err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var job string
		var n int
		if err := rows.Scan(&job, &n); err != nil {
			return nil, fmt.Errorf("cannot count duplicated ticks: %w", err)
		}
		out[job] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("cannot count duplicated ticks: %w", err)
	}
	return out, nil
}

// SucceededTicks returns the scheduled times in [from, to] of the job's
// runs that have a success row in job_runs, for a backfill to leave alone.
func SucceededTicks(ctx context.Context, db *sql.DB, job string, from, to time.Time) (map[time.Time]bool, error) {
	rows, err := db.QueryContext(ctx, bind(db, `SELECT DISTINCT scheduled_at FROM job_runs
WHERE job = ? AND result = 'success' AND scheduled_at >= ? AND scheduled_at <= ?`), job, FormatTime(from), FormatTime(to))
	if err != nil {
		return nil, fmt.Errorf("cannot read the succeeded ticks of job %q: %w", job, err)
	}
	defer func() { _ = rows.Close() }()
	out := make(map[time.Time]bool)
	for rows.Next() {
		var v any
		if err := rows.Scan(&v); err != nil {
			return nil, fmt.Errorf("cannot read the succeeded ticks of job %q: %w", job, err)
		}
		t, err := scanTime(v)
		if err != nil {
			return nil, fmt.Errorf("job_runs.scheduled_at of job %q: %w", job, err)
		}
		out[t] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("cannot read the succeeded ticks of job %q: %w", job, err)
	}
	return out, nil
}
