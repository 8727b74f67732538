package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sqlworker/worker/internal/jobhistory"
)

// History buffer bounds and timings.
const (
	// DefaultHistoryBuffer is how many finished runs the Scheduler holds in
	// memory while their job_runs rows cannot be written (database locked,
	// full, read-only, gone). A run finishing while the buffer is full is
	// not held: it is counted in worker_job_history_dropped_total and
	// logged. A held run costs a few hundred bytes.
	DefaultHistoryBuffer = 10000

	// historyBatch is how many held rows one INSERT writes: one statement,
	// so each batch is atomic, and the write lock is held briefly.
	historyBatch = 100

	historyRetryMin = 1 * time.Second
	historyRetryMax = 30 * time.Second
)

// Errors about the run history.
var (
	// ErrHistoryLost is returned by Stop when held runs could still not be
	// written at shutdown; they are counted as dropped.
	ErrHistoryLost = errors.New("job runs lost from history")
	// ErrHistoryFull is the history error of a run that finished while the
	// buffer of held runs was full: its row was dropped.
	ErrHistoryFull = errors.New("history buffer full: run dropped")
)

// HistoryError says that finished runs are held in memory because their
// job_runs rows could not be written, and why.
type HistoryError struct {
	Pending int   // runs held, oldest first, waiting to be written
	Err     error // the last write's error
}

func (e *HistoryError) Error() string {
	return fmt.Sprintf("%d runs held for retry: %v", e.Pending, e.Err)
}

func (e *HistoryError) Unwrap() error { return e.Err }

// newHistoryRow is what job_runs stores of a run.
func newHistoryRow(r *Run) jobhistory.RunRow {
	row := jobhistory.RunRow{
		Job: r.Job, ScheduledAt: r.ScheduledAt, StartedAt: r.StartedAt, EndedAt: r.EndedAt,
		Result: string(r.Result), RowsAffected: r.RowsAffected, Attempt: max(1, r.Attempt), Jitter: r.Jitter,
	}
	if row.ScheduledAt.IsZero() {
		row.ScheduledAt = r.StartedAt
	}
	if r.Err != nil {
		row.Error = r.Err.Error()
	}
	return row
}

// history writes finished runs to job_runs in the order they finished. A
// run is appended to a queue and the queue is written from its head; rows
// that cannot be written stay queued, up to limit, and are written on the
// next run's write, on a retry timer with backoff, or at Stop. One writer
// at a time (flushing), so the rows keep their order; a run that finishes
// while another run is writing leaves its row to that writer.
type history struct {
	db      Initer
	logger  *slog.Logger
	limit   int
	pending prometheus.Gauge
	dropped prometheus.Counter
	kick    chan struct{}          // a write failed: wake the retry loop
	ins     jobhistory.RunInserter // used by the one writer (flushing)

	mu       sync.Mutex
	idle     *sync.Cond // signalled when flushing ends
	queue    []jobhistory.RunRow
	flushing bool
	lastErr  error // of the last failed write; nil once the queue is empty
	dropping bool  // dropping since the last successful write (logged once)
}

func newHistory(db Initer, logger *slog.Logger, limit int, m *metrics) *history {
	if limit <= 0 {
		limit = DefaultHistoryBuffer
	}
	h := &history{
		db: db, logger: logger, limit: limit,
		pending: m.historyPending, dropped: m.historyDropped,
		kick: make(chan struct{}, 1),
	}
	h.idle = sync.NewCond(&h.mu)
	return h
}

// add queues the run's row and writes the queue unless another run is
// writing it. It returns the history's state after that: nil, or a
// *HistoryError while rows are held, or ErrHistoryFull.
func (h *history) add(r *Run) error {
	h.mu.Lock()
	if len(h.queue) >= h.limit && !h.flushing {
		// Full: write what is held first, which makes room if the
		// database takes writes again.
		h.flushing = true
		h.mu.Unlock()
		_ = h.flush(context.Background())
		h.mu.Lock()
	}
	if len(h.queue) >= h.limit {
		h.dropped.Inc()
		if !h.dropping {
			h.dropping = true
			h.logger.Error("History buffer full: dropping job runs until the database takes writes",
				"held", len(h.queue), "limit", h.limit, "err", h.lastErr)
		}
		err := fmt.Errorf("%w (%d held)", ErrHistoryFull, h.limit)
		if h.lastErr != nil {
			err = fmt.Errorf("%w: %w", err, h.lastErr)
		}
		h.mu.Unlock()
		return err
	}
	h.queue = append(h.queue, newHistoryRow(r))
	h.pending.Set(float64(len(h.queue)))
	if h.flushing {
		err := h.errLocked()
		h.mu.Unlock()
		return err
	}
	h.flushing = true
	h.mu.Unlock()
	return h.flush(context.Background())
}

// Err returns nil when no run is held, or a *HistoryError.
func (h *history) Err() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.errLocked()
}

func (h *history) errLocked() error {
	if len(h.queue) == 0 || h.lastErr == nil {
		return nil
	}
	return &HistoryError{Pending: len(h.queue), Err: h.lastErr}
}

// flush writes the queue, batch by batch, until it is empty or a write
// fails. The caller has set flushing; flush clears it.
func (h *history) flush(ctx context.Context) error {
	written := 0
	for {
		h.mu.Lock()
		if len(h.queue) == 0 {
			wasFailing := h.lastErr != nil
			h.lastErr, h.dropping, h.flushing = nil, false, false
			h.idle.Broadcast()
			h.mu.Unlock()
			if wasFailing {
				h.logger.Info("History caught up: held job runs written", "written", written)
			}
			return nil
		}
		batch := append([]jobhistory.RunRow(nil), h.queue[:min(len(h.queue), historyBatch)]...)
		h.mu.Unlock()

		err := h.write(ctx, batch)

		h.mu.Lock()
		if err != nil {
			first := h.lastErr == nil
			h.lastErr, h.flushing = err, false
			h.idle.Broadcast()
			state := h.errLocked()
			h.mu.Unlock()
			if first {
				h.logger.Warn("Cannot record job runs: holding them in memory for retry", "held", len(batch), "err", err)
			}
			select {
			case h.kick <- struct{}{}:
			default:
			}
			return state
		}
		// Only add removes from the queue's tail and only flush from its
		// head, so the batch is still the head.
		h.queue = h.queue[len(batch):]
		if len(h.queue) == 0 {
			h.queue = nil // let the backing array go after a long fault
		}
		h.pending.Set(float64(len(h.queue)))
		written += len(batch)
		h.mu.Unlock()
	}
}

// tryFlush writes the queue unless it is empty or being written; it reports
// whether the queue is empty or in other hands afterwards.
func (h *history) tryFlush(ctx context.Context) bool {
	h.mu.Lock()
	if len(h.queue) == 0 || h.flushing {
		h.mu.Unlock()
		return true
	}
	h.flushing = true
	h.mu.Unlock()
	return h.flush(ctx) == nil
}

// retry writes held rows on a timer after a failed write, backing off from
// historyRetryMin to historyRetryMax, until ctx is done.
func (h *history) retry(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-h.kick:
		}
		for backoff := historyRetryMin; ; backoff = min(2*backoff, historyRetryMax) {
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			if h.tryFlush(ctx) {
				break
			}
		}
	}
}

// drain waits for a write in progress, then writes what is held, once. Rows
// it cannot write are dropped and counted; the error says how many. It
// releases the prepared INSERT: drain is the last write.
func (h *history) drain(ctx context.Context) error {
	defer h.ins.Close()
	h.mu.Lock()
	for h.flushing {
		h.idle.Wait()
	}
	if len(h.queue) == 0 {
		h.mu.Unlock()
		return nil
	}
	h.flushing = true
	h.mu.Unlock()
	if h.flush(ctx) == nil {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	n, err := len(h.queue), h.lastErr
	h.dropped.Add(float64(n))
	h.queue = nil
	h.pending.Set(0)
	return fmt.Errorf("%w: %d runs: %w", ErrHistoryLost, n, err)
}

// write inserts rows into job_runs (jobhistory.InsertRuns), so the batch is
// written whole or not at all. It has its own timeout: a run cancelled at
// shutdown must still be recorded.
func (h *history) write(ctx context.Context, rows []jobhistory.RunRow) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), historyWriteTimeout)
	defer cancel()
	sdb, err := h.db.Init(ctx)
	if err != nil {
		return err
	}
	return h.ins.Insert(ctx, sdb, rows)
}
