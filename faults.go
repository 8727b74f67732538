package worker

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/sqlworker/worker/internal/config"
	"github.com/sqlworker/worker/internal/db"
	"github.com/sqlworker/worker/internal/jobs"
	webpkg "github.com/sqlworker/worker/internal/web"
)

// runFaults turns finished runs into readiness faults: the heartbeat's
// result, and any job's failure with a storage error (database full,
// read-only, I/O error: see db.IsStorageError), which is not that job's
// fault. Each clears on the next success of what set it, so the worker
// becomes ready again by itself. A fault follows the newest run, by
// scheduled time: a run whose record arrives after a newer run's (its
// history write took longer) does not overwrite what the newer one said.
// Skipped runs say nothing; the heartbeat's Overdue check notices them.
// The history's state is a readiness check of its own (Scheduler.HistoryErr).
type runFaults struct {
	readiness *webpkg.Readiness
	logger    *slog.Logger
}

func (f *runFaults) observe(r *jobs.Run, _ error) {
	at := r.ScheduledAt
	if at.IsZero() {
		at = r.StartedAt
	}
	switch {
	case r.Result == jobs.Skipped:
	case r.Job == config.Heartbeat:
		var err error
		if r.Result != jobs.Success {
			err = fmt.Errorf("%s: %w", r.Result, r.Err)
		}
		f.set("heartbeat", at, err)
	case r.Result == jobs.Success:
		f.set("job "+r.Job, at, nil)
	case db.IsStorageError(r.Err):
		f.set("job "+r.Job, at, fmt.Errorf("%s: %w", r.Result, r.Err))
	}
}

func (f *runFaults) set(name string, at time.Time, err error) {
	if !f.readiness.SetFaultAt(name, at, err) {
		return
	}
	if err != nil {
		f.logger.Warn("Not ready", "fault", name, "err", err)
	} else {
		f.logger.Info("Fault cleared", "fault", name)
	}
}
