package worker

import (
	"fmt"

	"github.com/sqlworker/worker/internal/jobs"
)

// phase is where a Worker is in its life. It only moves forward, one
// transition per method: Open (or Start) moves a new worker to opening and,
// once its scheduler exists, to open; Start to started; Stop to stopped
// from any phase; Close to closed. Whether the database is open is the
// handle's business, not the phase's: on PostgreSQL a worker can be
// started while the database is still being retried (Worker.reopening).
type phase int

const (
	phaseNew     phase = iota // Register is allowed
	phaseOpening              // Open, Start or Run was called; not open yet (or it failed)
	phaseOpen                 // the scheduler exists; nothing is scheduled yet
	phaseStarted              // scheduling
	phaseStopped              // Stop was called; the database stays open until Close
	phaseClosed               // Close was called
)

// String names the phase in errors.
func (p phase) String() string {
	switch p {
	case phaseNew, phaseOpening:
		return "starting"
	case phaseOpen:
		return "open, not started"
	case phaseStarted:
		return "running"
	}
	return "shutting down"
}

// advance moves the worker to p unless it is already there or past it.
// Called with mu held.
func (w *Worker) advance(p phase) { w.phase = max(w.phase, p) }

// stoppedLocked reports whether Stop or Close was called. Called with mu
// held.
func (w *Worker) stoppedLocked() bool { return w.phase >= phaseStopped }

// scheduler returns the scheduler if the worker is at least in phase min
// and not stopped, and ErrNotRunning saying where it is otherwise.
func (w *Worker) scheduler(min phase) (*jobs.Scheduler, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case w.stoppedLocked():
		return nil, fmt.Errorf("%w: %s", ErrNotRunning, w.phase)
	case w.phase < min && min == phaseOpen:
		return nil, fmt.Errorf("%w: not open (call Open or Start first)", ErrNotRunning)
	case w.phase < min:
		return nil, fmt.Errorf("%w: %s", ErrNotRunning, w.phase)
	}
	return w.sched, nil
}
