// Package db owns the worker's one shared database handle, on SQLite by
// default or on PostgreSQL (postgres.go): an idempotent Init that opens it
// once, and a driver that counts every handle and connection of the
// process; every open runs the migrations of internal/schema, and
// internal/jobhistory writes the worker's rows. On SQLite it also guards
// the files: one worker per database file (lock.go), nothing changed in a file it refuses and dropped tables
// repaired (internal/schema's Inspect and Repair), a removed -wal or -shm
// recovered from (wal.go), and corruption reported loudly.
package db

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sqlworker/worker/internal/faultinject/leak"
	"github.com/sqlworker/worker/internal/schema"
	"github.com/sqlworker/worker/sqlcount"
)

// Defaults for Config.
const (
	DefaultPath         = "worker.db"
	DefaultMaxOpenConns = 4
	DefaultBusyTimeout  = 5 * time.Second
	// DefaultCloseTimeout bounds Close's wait for connections still in use.
	DefaultCloseTimeout = 10 * time.Second
)

// Errors returned by Handle.
var (
	ErrClosed      = errors.New("database handle is closed")
	ErrLocked      = errors.New("database is in use by another worker")
	ErrNotOpen     = errors.New("database is not open")
	ErrFileChanged = errors.New("database file was removed or replaced while open")
	// ErrWALChanged is the database's -wal or -shm removed or replaced
	// while connections had it open.
	ErrWALChanged = errors.New("database -wal or -shm was removed or replaced while open")
	// ErrCorrupt is SQLite reporting the database malformed or not a
	// database: jobs stop writing to it, and Close returns it.
	ErrCorrupt = errors.New("database is corrupt")
	// ErrCloseTimeout is returned by Close when connections stayed in use,
	// as leaked rows or transactions keep them.
	ErrCloseTimeout = errors.New("database close timed out: connections still in use")
)

// Config holds the settings of a Handle.
type Config struct {
	Path         string        // path of the database file; created if missing
	MaxOpenConns int           // pool bound; connections can never exceed it
	BusyTimeout  time.Duration // how long a statement waits for a lock
	CloseTimeout time.Duration // how long Close waits for connections in use
	// MaxPageCount caps the database's size in pages (PRAGMA max_page_count,
	// set on every connection); a write that needs more fails with
	// "database or disk is full". 0 keeps SQLite's own limit.
	MaxPageCount int64
	// Checkpoint says who checkpoints the WAL: CheckpointWorker (the
	// default, also for "") or CheckpointExternal, under which the worker
	// never does, for Litestream. Another value fails the open with
	// ErrCheckpointMode.
	Checkpoint string
	// URL, when set, is a postgres:// URL: the Handle then opens PostgreSQL
	// there instead of the SQLite file at Path (postgres.go). Check it with
	// CheckURL first; Path and the SQLite settings are then unused.
	URL string
	// PasswordFile, with URL, is a file whose first line is the password,
	// read at each connect: it wins over the URL's, PGPASSWORD and PGPASSFILE.
	PasswordFile string
	// ReplicaID, with URL, tells this process apart on the server: its
	// application_name is ApplicationName(ReplicaID). Default
	// DefaultReplicaID().
	ReplicaID string
	Logger    *slog.Logger
}

// Handle is the one shared *sql.DB of the process. Init opens it on the first
// successful call and returns the same *sql.DB on every later call.
type Handle struct {
	cfg    Config
	logger *slog.Logger
	be     backend // the Handle itself for SQLite (sqlite.go), or *postgres
	where  string  // the path, or the URL with its password masked, for logs and errors

	db atomic.Pointer[sql.DB] // set once open; the lock-free fast path

	mu     sync.Mutex // serialises the slow path, Verify and Close
	closed bool
	cur    *sql.DB                // the open handle, also while db is nil because it is corrupt
	pool   atomic.Pointer[sql.DB] // cur, for Stats without the lock
	conn   *connector             // the open handle's connector: counts its connections, owns the lock
	files  dbFiles                // identities of the files the handle opened
	stale  *staleWAL              // left behind by a handle that Verify dropped
	// walDropped: the last handle was dropped because its -wal or -shm
	// changed; the next open runs quick_check.
	walDropped bool

	// corrupt is set, once, when SQLite reported the database malformed;
	// it is read without the lock.
	corrupt atomic.Pointer[error]
	// state is what Health reads without the lock, so that /readyz never
	// waits for an open or a Close in progress. Written under mu.
	state atomic.Pointer[handleState]

	statsMu sync.Mutex  // guards retired; never held across I/O
	retired sql.DBStats // counters of the handles Verify dropped

	opened, reused, failed atomic.Uint64 // Init calls by result
}

// New returns a Handle that opens nothing until the first Init.
func New(cfg Config) *Handle {
	if cfg.Path == "" {
		cfg.Path = DefaultPath
	}
	if cfg.MaxOpenConns <= 0 {
		cfg.MaxOpenConns = DefaultMaxOpenConns
	}
	if cfg.BusyTimeout <= 0 {
		cfg.BusyTimeout = DefaultBusyTimeout
	}
	if cfg.CloseTimeout <= 0 {
		cfg.CloseTimeout = DefaultCloseTimeout
	}
	if cfg.URL != "" && cfg.ReplicaID == "" {
		cfg.ReplicaID = DefaultReplicaID()
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	h := &Handle{cfg: cfg, logger: logger, where: cfg.Path}
	h.be = h
	if cfg.URL != "" {
		h.be = &postgres{h: h}
		h.where = RedactURL(cfg.URL)
	}
	return h
}

// Postgres reports whether the handle opens PostgreSQL (Config.URL).
func (h *Handle) Postgres() bool { return h.cfg.URL != "" }

// Where returns what the handle opens, for logs: the database file's path,
// or the URL with its password masked.
func (h *Handle) Where() string { return h.where }

// ApplicationName returns the application_name of a PostgreSQL handle's
// connections, "" for SQLite.
func (h *Handle) ApplicationName() string {
	if !h.Postgres() {
		return ""
	}
	return ApplicationName(h.cfg.ReplicaID)
}

// ReplicaID returns the replica id of a PostgreSQL handle, "" for SQLite.
func (h *Handle) ReplicaID() string { return h.cfg.ReplicaID }

// Path returns the path of the database file.
func (h *Handle) Path() string { return h.cfg.Path }

// MaxOpenConns returns the pool bound.
func (h *Handle) MaxOpenConns() int { return h.cfg.MaxOpenConns }

// Init returns the shared *sql.DB, opening it on the first call. It is safe
// for concurrent use. After the first success it does no I/O, takes no lock
// and allocates nothing. A failed open leaves the handle unopened, so the
// next call tries again.
func (h *Handle) Init(ctx context.Context) (*sql.DB, error) {
	if db := h.db.Load(); db != nil {
		if leak.Enabled {
			return h.leakInit(ctx, db)
		}
		h.reused.Add(1)
		return db, nil
	}
	return h.initSlow(ctx)
}

func (h *Handle) initSlow(ctx context.Context) (*sql.DB, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		h.failed.Add(1)
		return nil, ErrClosed
	}
	if err := h.Corrupt(); err != nil {
		h.failed.Add(1)
		return nil, err
	}
	if db := h.db.Load(); db != nil { // another caller won the race
		h.reused.Add(1)
		return db, nil
	}
	db, err := h.be.open(ctx)
	if err != nil {
		h.failed.Add(1)
		h.state.Store(&handleState{err: err})
		return nil, err
	}
	h.cur = db
	h.pool.Store(db)
	h.state.Store(&handleState{open: true, file: h.files.db, conn: h.conn})
	h.db.Store(db)
	if err := h.Corrupt(); err != nil { // seen while opening: unpublish
		h.db.Store(nil)
		h.failed.Add(1)
		return nil, err
	}
	h.opened.Add(1)
	h.logger.Info("Database opened", "database", h.where, "max_open_conns", h.cfg.MaxOpenConns)
	return db, nil
}

// Corrupt returns the error of SQLite's that showed the database malformed,
// wrapped in ErrCorrupt, or nil. Once set it stays set for the life of the
// Handle: a corrupt database needs an operator (docs/runbook.md).
func (h *Handle) Corrupt() error {
	if p := h.corrupt.Load(); p != nil {
		return *p
	}
	return nil
}

// markCorrupt is the connector's onCorrupt. It runs inside a driver call,
// possibly under mu (Verify's checkpoint), so it takes no lock: it records
// the error and unpublishes the *sql.DB, so that Init's fast path misses and
// its slow path refuses. The *sql.DB stays in cur for Close.
func (h *Handle) markCorrupt(cause error) {
	err := fmt.Errorf("%w: %s: %w", ErrCorrupt, h.cfg.Path, cause)
	if h.corrupt.CompareAndSwap(nil, &err) {
		h.db.Store(nil)
		h.logger.Error("Database is corrupt; no job writes to it any more, and the worker will exit 1. See the runbook: WorkerDatabaseCorrupt", "path", h.cfg.Path, "err", cause)
	}
}

// Close checkpoints the WAL (wal_checkpoint(TRUNCATE), unless Config.Checkpoint
// is CheckpointExternal) and closes the handle; the flock on the
// database file goes with its last connection (see connector.release). It
// returns the corruption error when SQLite reported the database corrupt
// (ErrCorrupt), so that the worker exits non-zero. It is safe to call more
// than once and on a handle that never opened; Init returns ErrClosed
// afterwards.
func (h *Handle) Close(ctx context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil
	}
	h.closed = true
	h.state.Store(&handleState{closed: true})
	h.db.Store(nil)
	h.be.stop()
	db, pending := h.cur, h.be.pending()
	h.cur, h.conn = nil, nil
	h.pool.Store(nil)
	corrupt := h.Corrupt()
	if db == nil {
		return corrupt
	}
	defer h.retire(db) // runs after the close below
	// One deadline for the checkpoint and the close: a connection pinned by
	// leaked rows would otherwise make both wait for ever, and the worker
	// would never exit.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), h.cfg.CloseTimeout)
	defer cancel()
	var errs []error
	if err := h.be.checkpoint(ctx, db); err != nil {
		errs = append(errs, err)
	}
	// (*sql.DB).Close closes the idle connections and returns; those in use
	// close when they are returned. Wait for them, within the deadline: the
	// connector closes the lock after the last one.
	if err := db.Close(); err != nil {
		errs = append(errs, fmt.Errorf("cannot close database: %w", err))
	}
	for pending() > 0 {
		if ctx.Err() != nil {
			errs = append(errs, fmt.Errorf("%w after %s", ErrCloseTimeout, h.cfg.CloseTimeout))
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if corrupt != nil {
		errs = append(errs, corrupt)
	}
	h.logger.Info("Database closed", "database", h.where)
	return errors.Join(errs...)
}

// InitCalls reports the Init calls so far by result.
func (h *Handle) InitCalls() (opened, reused, failed uint64) {
	return h.opened.Load(), h.reused.Load(), h.failed.Load()
}

// leakInit lets a leak-tagged build replace the fast path.
func (h *Handle) leakInit(ctx context.Context, db *sql.DB) (*sql.DB, error) {
	db, opened, err := leak.Init(ctx, db, leak.Openers{Counted: h.leakOpen, Raw: h.leakOpenRaw})
	switch {
	case err != nil:
		h.failed.Add(1)
	case opened:
		h.opened.Add(1)
	default:
		h.reused.Add(1)
	}
	return db, err
}

// leakOpen opens a handle of its own on the database, through the counting
// driver, as PERF-408's initDb did: for the leak build's handle mode.
func (h *Handle) leakOpen() (*sql.DB, error) {
	if p, ok := h.be.(*postgres); ok {
		cfg, err := p.pgConfig()
		if err != nil {
			return nil, err
		}
		return sql.OpenDB(sqlcount.NewConnector(p.connector(cfg), &accounting)), nil
	}
	return sql.Open(DriverName, h.DSN())
}

// leakOpenRaw opens a handle on the database around the counting driver,
// for the leak build's bypass mode: pgx's connector with the handle's
// application_name and password file, or go-sqlite3's own driver.
func (h *Handle) leakOpenRaw() (*sql.DB, error) {
	if p, ok := h.be.(*postgres); ok {
		cfg, err := p.pgConfig()
		if err != nil {
			return nil, err
		}
		return sql.OpenDB(p.connector(cfg)), nil
	}
	return schema.OpenRaw(h.DSN()), nil
}

// Health reports whether the handle is open on the file that is at the
// configured path now, with the -wal and -shm its connections use, and
// whether SQLite reported the database corrupt. SQLite goes on reading and
// writing a database file that was unlinked or replaced under it, and every
// statement succeeds while the data goes nowhere anyone can see; Health
// notices by comparing device and inode numbers. It does no more than three
// stats and never changes the handle: Verify does that.
// On PostgreSQL it returns instead the last result of the server check that
// an open handle runs every DefaultServerCheckInterval (ErrServerUnreachable
// with the cause while the server does not answer), without waiting for the
// server. It takes no lock.
func (h *Handle) Health() error {
	st := h.state.Load()
	switch {
	case st != nil && st.closed:
		return ErrClosed
	case h.Corrupt() != nil:
		return h.Corrupt()
	case st == nil:
		return ErrNotOpen
	case !st.open && st.err != nil:
		return fmt.Errorf("%w: %w", ErrNotOpen, st.err)
	case !st.open:
		return ErrNotOpen
	}
	return h.be.checkFiles(st)
}

// handleState is a snapshot of the handle for Health.
type handleState struct {
	open, closed bool
	file         fileID     // of the open database
	conn         *connector // of the open database
	err          error      // why the last open failed, or why the handle was dropped
}

// retire keeps the counters of a closed *sql.DB, so that Stats stays monotonic
// across a reopen.
func (h *Handle) retire(db *sql.DB) {
	s := db.Stats()
	h.statsMu.Lock()
	defer h.statsMu.Unlock()
	h.retired.WaitCount += s.WaitCount
	h.retired.WaitDuration += s.WaitDuration
	h.retired.MaxIdleClosed += s.MaxIdleClosed
	h.retired.MaxIdleTimeClosed += s.MaxIdleTimeClosed
	h.retired.MaxLifetimeClosed += s.MaxLifetimeClosed
}

// OpenPool returns the pool of the handle open now, or nil while it is not
// open; it never opens one. The collectors' queries run on it.
func (h *Handle) OpenPool() *sql.DB {
	d := h.pool.Load()
	if d == nil || h.db.Load() == nil {
		return nil
	}
	return d
}

// Stats returns the pool statistics of the handle open now, with the
// counters of the handles it replaced added, so that they never go down.
// When no handle is open, the gauges are 0.
func (h *Handle) Stats() sql.DBStats {
	var s sql.DBStats
	if db := h.pool.Load(); db != nil { // also while corrupt: the pool is still open
		s = db.Stats()
	}
	s.MaxOpenConnections = h.cfg.MaxOpenConns
	h.statsMu.Lock()
	r := h.retired
	h.statsMu.Unlock()
	s.WaitCount += r.WaitCount
	s.WaitDuration += r.WaitDuration
	s.MaxIdleClosed += r.MaxIdleClosed
	s.MaxIdleTimeClosed += r.MaxIdleTimeClosed
	s.MaxLifetimeClosed += r.MaxLifetimeClosed
	return s
}
