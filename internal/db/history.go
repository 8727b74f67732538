package db

import (
	"context"
	"database/sql"
	"strings"
	"time"
)

// The worker's own tables, job_runs and heartbeat, are created by the
// migrations (migrate.go), repaired by schema.go and written here only:
// their columns and their time format have this one owner.

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
}

// InsertRuns writes rows to job_runs with one statement, so that they are
// written whole or not at all.
func InsertRuns(ctx context.Context, db *sql.DB, rows []RunRow) error {
	var b strings.Builder
	b.WriteString(`INSERT INTO job_runs
		(job, scheduled_at, started_at, ended_at, result, error, rows_affected) VALUES `)
	args := make([]any, 0, 7*len(rows))
	for i, r := range rows {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("(?, ?, ?, ?, ?, ?, ?)")
		args = append(args, r.Job, FormatTime(r.ScheduledAt), FormatTime(r.StartedAt), FormatTime(r.EndedAt),
			r.Result, r.Error, r.RowsAffected)
	}
	_, err := db.ExecContext(ctx, b.String(), args...)
	return err
}

// PruneRuns deletes the job_runs rows of runs that ended before cutoff and
// returns how many it deleted.
func PruneRuns(ctx context.Context, db *sql.DB, cutoff time.Time) (int64, error) {
	res, err := db.ExecContext(ctx, "DELETE FROM job_runs WHERE ended_at < ?", FormatTime(cutoff))
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// Beat is the heartbeat table's one row: which worker process is alive.
type Beat struct {
	PID       int
	Hostname  string
	Version   string
	StartedAt time.Time // of the process
	BeatAt    time.Time
}

// WriteHeartbeat upserts the heartbeat row and returns the rows changed.
func WriteHeartbeat(ctx context.Context, db *sql.DB, b Beat) (int64, error) {
	res, err := db.ExecContext(ctx, `INSERT INTO heartbeat (id, pid, hostname, version, started_at, beat_at)
		VALUES (1, ?, ?, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET pid = excluded.pid, hostname = excluded.hostname,
			version = excluded.version, started_at = excluded.started_at, beat_at = excluded.beat_at`,
		b.PID, b.Hostname, b.Version, FormatTime(b.StartedAt), FormatTime(b.BeatAt))
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}
