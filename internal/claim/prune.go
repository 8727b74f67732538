package claim

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// Prune deletes the finished and missed claims of ticks scheduled more than
// olderThan before the server's now(), keeping each job's newest claim (the
// missed-tick check counts only ticks after a job's first claim). Running
// and buffered claims are kept whatever their age. It returns the rows deleted. The
// worker's history pruning can call it; olderThan should exceed the missed
// grace and the lease.
func Prune(ctx context.Context, db *sql.DB, olderThan time.Duration) (int64, error) {
	if olderThan <= 0 {
		return 0, fmt.Errorf("claim: Prune: olderThan %s must be positive", olderThan)
	}
	res, err := db.ExecContext(ctx, `DELETE FROM job_claims c
WHERE status NOT IN ('running', 'buffered') AND scheduled_at < now() - $1 * interval '1 microsecond'
	AND scheduled_at < (SELECT max(scheduled_at) FROM job_claims n WHERE n.job = c.job)`, olderThan.Microseconds())
	if err != nil {
		return 0, fmt.Errorf("cannot prune job_claims: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("cannot prune job_claims: %w", err)
	}
	return n, nil
}
