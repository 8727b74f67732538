package main

import (
	"fmt"
	"time"
)

// The script one sqlite3 process of the cron stand-in runs for a tick of
// the expire job: the job's SQL in one transaction, then its job_runs row
// with the tick's scheduled time, as the worker records it.
func Example_cronScript() {
	at := time.Date(2026, 12, 1, 14, 20, 5, 0, time.UTC)
	fmt.Print(cronScript(jobs[2], at))
	// Output:
	// .timeout 5000
	// PRAGMA synchronous = NORMAL;
	// BEGIN IMMEDIATE;
	// CREATE TABLE IF NOT EXISTS events (job TEXT NOT NULL, at TEXT NOT NULL); DELETE FROM events WHERE at < strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-30 seconds');
	// COMMIT;
	// INSERT INTO job_runs (job, scheduled_at, started_at, ended_at, result, rows_affected)
	//   VALUES ('expire', '2026-12-01T14:20:05.000Z', strftime('%Y-%m-%dT%H:%M:%fZ'), strftime('%Y-%m-%dT%H:%M:%fZ'), 'success', changes());
}
