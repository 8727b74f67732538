package jobhistory

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// PauseRow is a job_pauses row: a paused job, why, since when and by which
// replica. A job with no row is not paused.
type PauseRow struct {
	Job      string
	Reason   string
	PausedAt time.Time
	PausedBy string // the replica id on PostgreSQL, "" on SQLite
}

// SetPause pauses row.Job, or replaces the reason, time and replica of a
// job already paused.
func SetPause(ctx context.Context, d *sql.DB, row PauseRow) error {
	_, err := d.ExecContext(ctx, bind(d, `INSERT INTO job_pauses (job, reason, paused_at, paused_by) VALUES (?, ?, ?, ?)
		ON CONFLICT (job) DO UPDATE SET reason = excluded.reason, paused_at = excluded.paused_at, paused_by = excluded.paused_by`),
		row.Job, row.Reason, FormatTime(row.PausedAt), row.PausedBy)
	if err != nil {
		return fmt.Errorf("cannot pause job %q: %w", row.Job, err)
	}
	return nil
}

// DeletePause resumes job, and reports whether it was paused.
func DeletePause(ctx context.Context, d *sql.DB, job string) (bool, error) {
	res, err := d.ExecContext(ctx, bind(d, "DELETE FROM job_pauses WHERE job = ?"), job)
	if err != nil {
		return false, fmt.Errorf("cannot resume job %q: %w", job, err)
	}
	n, err := res.RowsAffected()
	return n > 0, err
}

// Pauses returns every job_pauses row, by job: one small table read whole.
func Pauses(ctx context.Context, d *sql.DB) (map[string]PauseRow, error) {
	rows, err := d.QueryContext(ctx, "SELECT job, reason, paused_at, paused_by FROM job_pauses")
	if err != nil {
		return nil, fmt.Errorf("cannot read paused jobs: %w", err)
	}
	defer rows.Close()
	out := map[string]PauseRow{}
	for rows.Next() {
		var p PauseRow
		var at any
		if err := rows.Scan(&p.Job, &p.Reason, &at, &p.PausedBy); err != nil {
			return nil, fmt.Errorf("cannot read paused jobs: %w", err)
		}
		if p.PausedAt, err = scanTime(at); err != nil {
			return nil, fmt.Errorf("job_pauses.paused_at of job %q: %w", p.Job, err)
		}
		out[p.Job] = p
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("cannot read paused jobs: %w", err)
	}
	return out, nil
}

// scanTime converts a time column as scanned into an any: TimeFormat text
// from SQLite, a time.Time from PostgreSQL's timestamptz.
func scanTime(v any) (time.Time, error) {
	switch v := v.(type) {
	case time.Time:
		return v.UTC(), nil
	case string:
		return time.Parse(TimeFormat, v)
	case []byte:
		return time.Parse(TimeFormat, string(v))
	}
	return time.Time{}, fmt.Errorf("a %T, not a time", v)
}

// MaxRecentRuns bounds the rows RecentRuns reads.
const MaxRecentRuns = 100

// RecentRuns returns the newest n (at most MaxRecentRuns) job_runs rows of
// job, newest first, by start: one range scan of job_runs_job_started.
func RecentRuns(ctx context.Context, d *sql.DB, job string, n int) ([]RunRow, error) {
	n = min(max(n, 0), MaxRecentRuns)
	rows, err := d.QueryContext(ctx, bind(d, `SELECT scheduled_at, started_at, ended_at, result, error, rows_affected, attempt, jitter_ms
		FROM job_runs WHERE job = ? ORDER BY started_at DESC LIMIT ?`), job, n)
	if err != nil {
		return nil, fmt.Errorf("cannot read the runs of job %q: %w", job, err)
	}
	defer rows.Close()
	var out []RunRow
	for rows.Next() {
		r := RunRow{Job: job}
		var sched, start, end any
		var jitter int64
		if err := rows.Scan(&sched, &start, &end, &r.Result, &r.Error, &r.RowsAffected, &r.Attempt, &jitter); err != nil {
			return nil, fmt.Errorf("cannot read the runs of job %q: %w", job, err)
		}
		for _, t := range []struct {
			dst *time.Time
			v   any
		}{{&r.ScheduledAt, sched}, {&r.StartedAt, start}, {&r.EndedAt, end}} {
			if *t.dst, err = scanTime(t.v); err != nil {
				return nil, fmt.Errorf("a job_runs time of job %q: %w", job, err)
			}
		}
		r.Jitter = time.Duration(jitter) * time.Millisecond
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("cannot read the runs of job %q: %w", job, err)
	}
	return out, nil
}
