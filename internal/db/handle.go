// Package db owns the worker's one shared SQLite handle: an idempotent Init
// that opens it once, a driver that counts every handle and connection of
// the process, and the worker's own tables: their migrations, and every
// write to them with their time format (history.go). It also guards
// the files: one worker per database file (lock.go), nothing changed in a
// file it refuses and dropped tables repaired (schema.go), a removed -wal or
// -shm recovered from (wal.go), and corruption reported loudly.
package db

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sqlworker/worker/internal/leak"
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
	Logger       *slog.Logger
}

// Handle is the one shared *sql.DB of the process. Init opens it on the first
// successful call and returns the same *sql.DB on every later call.
type Handle struct {
	cfg    Config
	logger *slog.Logger

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
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Handle{cfg: cfg, logger: logger}
}

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
	db, err := h.open(ctx)
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
	h.logger.Info("Database opened", "path", h.cfg.Path, "max_open_conns", h.cfg.MaxOpenConns)
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

// DSN returns the data source name for the counting driver.
func (h *Handle) DSN() string {
	q := url.Values{}
	q.Set("_busy_timeout", strconv.FormatInt(h.cfg.BusyTimeout.Milliseconds(), 10))
	q.Set("_journal_mode", "WAL")
	q.Set("_foreign_keys", "on")
	q.Set("_synchronous", "NORMAL")
	q.Set("_txlock", "immediate")
	if h.cfg.MaxPageCount > 0 {
		q.Set(maxPageCountParam, strconv.FormatInt(h.cfg.MaxPageCount, 10))
	}
	return "file:" + (&url.URL{Path: h.cfg.Path}).EscapedPath() + "?" + q.Encode()
}

func (h *Handle) open(ctx context.Context) (_ *sql.DB, err error) {
	if strings.ContainsAny(h.cfg.Path, "?#") {
		return nil, fmt.Errorf("cannot open database %s: path must not contain '?' or '#'", h.cfg.Path)
	}
	if err := checkDir(h.cfg.Path); err != nil {
		return nil, err
	}
	// The connections of a dropped handle may hold the same file (a -wal
	// removed) and its flock: wait until they are gone.
	if err := h.waitStale(); err != nil {
		return nil, err
	}
	lock, id, err := lockDatabase(h.cfg.Path)
	if err != nil {
		return nil, err
	}
	owned := false // by the connector, from sql.OpenDB on
	defer func() {
		if !owned {
			_ = lock.Close() // no SQLite connection of ours is open
		}
	}()
	if err := h.clearStale(); err != nil {
		return nil, err
	}
	// Read-only, before anything can change the file: a file this worker
	// must refuse is left as it was.
	missing, err := inspect(ctx, h.cfg.Path, lock)
	if err != nil {
		return nil, err
	}

	c, err := sqliteDriver{}.OpenConnector(h.DSN())
	if err != nil {
		return nil, fmt.Errorf("cannot open database %s: %w", h.cfg.Path, err)
	}
	conn := c.(*connector)
	conn.guard = &walGuard{path: h.cfg.Path}
	conn.onCorrupt = h.markCorrupt
	conn.onFence = func() { h.recoverFenced(conn) }
	conn.lock = lock
	owned = true
	db := sql.OpenDB(sqlcount.NewConnector(conn, &accounting))
	defer func() {
		if err != nil {
			db.Close() // the connector closes the lock after the last connection
		}
	}()
	db.SetMaxOpenConns(h.cfg.MaxOpenConns)
	db.SetMaxIdleConns(h.cfg.MaxOpenConns)
	if err := db.PingContext(ctx); err != nil {
		return nil, fmt.Errorf("cannot open database %s: %w", h.cfg.Path, err)
	}
	if created, err := repairSchema(ctx, db, missing); err != nil {
		return nil, fmt.Errorf("cannot repair database %s: %w", h.cfg.Path, err)
	} else if len(created) > 0 {
		h.logger.Warn("Database schema repaired", "path", h.cfg.Path, "created", strings.Join(created, ","))
	}
	if err := Migrate(ctx, db); err != nil {
		return nil, fmt.Errorf("cannot migrate database %s: %w", h.cfg.Path, err)
	}
	// The pool holds the file open now: it must be the one locked.
	if now, err := statID(h.cfg.Path); err != nil {
		return nil, fmt.Errorf("cannot open database %s: %w", h.cfg.Path, err)
	} else if now != id {
		return nil, fmt.Errorf("cannot open database %s: the file was replaced while it opened", h.cfg.Path)
	}
	if h.walDropped {
		// Recovered from a removed -wal or -shm: say whether it worked. The
		// check reads the whole file, so it is bounded: on a large database
		// the quick_check job finishes it.
		qctx, cancel := context.WithTimeout(ctx, h.cfg.CloseTimeout)
		var check string
		err := db.QueryRowContext(qctx, "PRAGMA quick_check(1)").Scan(&check)
		cancel()
		switch {
		case err != nil && qctx.Err() != nil && ctx.Err() == nil:
			h.logger.Warn("Database reopened after its -wal or -shm changed; quick_check did not finish in time", "path", h.cfg.Path, "timeout", h.cfg.CloseTimeout)
		case err != nil:
			return nil, fmt.Errorf("cannot check database %s: %w", h.cfg.Path, err)
		case check != "ok":
			h.markCorrupt(errors.New("quick_check: " + check))
			return nil, h.Corrupt()
		default:
			h.logger.Info("Database reopened after its -wal or -shm changed; quick_check ok", "path", h.cfg.Path)
		}
		h.walDropped = false
	}
	// A new database has its -wal and -shm only since its first write.
	conn.guard.record()
	h.conn = conn
	h.files = dbFiles{db: id}
	h.files.wal, _ = statID(h.cfg.Path + "-wal")
	h.files.shm, _ = statID(h.cfg.Path + "-shm")
	return db, nil
}

// Close checkpoints the WAL and closes the handle; the flock on the
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
	db, conn := h.cur, h.conn
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
	// TRUNCATE leaves an empty -wal behind; closing the last connection then
	// removes it, so a stopped worker leaves one self-contained file.
	if _, err := db.ExecContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
		errs = append(errs, fmt.Errorf("cannot checkpoint wal: %w", err))
	}
	// (*sql.DB).Close closes the idle connections and returns; those in use
	// close when they are returned. Wait for them, within the deadline: the
	// connector closes the lock after the last one.
	if err := db.Close(); err != nil {
		errs = append(errs, fmt.Errorf("cannot close database: %w", err))
	}
	for conn.open.Load() > 0 {
		if ctx.Err() != nil {
			errs = append(errs, fmt.Errorf("%w after %s", ErrCloseTimeout, h.cfg.CloseTimeout))
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if corrupt != nil {
		errs = append(errs, corrupt)
	}
	h.logger.Info("Database closed", "path", h.cfg.Path)
	return errors.Join(errs...)
}

// InitCalls reports the Init calls so far by result.
func (h *Handle) InitCalls() (opened, reused, failed uint64) {
	return h.opened.Load(), h.reused.Load(), h.failed.Load()
}

// leakInit lets a leak-tagged build replace the fast path.
func (h *Handle) leakInit(ctx context.Context, db *sql.DB) (*sql.DB, error) {
	db, opened, err := leak.Init(ctx, db, h.DSN())
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

// fileID identifies a file across renames: the device and inode numbers.
type fileID struct{ dev, ino uint64 }

func statID(path string) (fileID, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return fileID{}, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	return fileID{dev: st.Dev, ino: st.Ino}, nil
}

// Health reports whether the handle is open on the file that is at the
// configured path now, with the -wal and -shm its connections use, and
// whether SQLite reported the database corrupt. SQLite goes on reading and
// writing a database file that was unlinked or replaced under it, and every
// statement succeeds while the data goes nowhere anyone can see; Health
// notices by comparing device and inode numbers. It does no more than three
// stats and never changes the handle: Verify does that.
// It takes no lock.
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
	id, err := statID(h.cfg.Path)
	switch {
	case errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR):
		return fmt.Errorf("%w: %s: %w", ErrFileChanged, h.cfg.Path, errors.Unwrap(err))
	case err != nil:
		// Cannot tell (EACCES on the directory, say): not proof of a change.
		return nil
	case id != st.file:
		return fmt.Errorf("%w: %s is another file now", ErrFileChanged, h.cfg.Path)
	}
	if g := st.conn.guard; st.conn.live.Load() > 0 || g.fenced() != nil {
		return g.check()
	}
	return nil
}

// handleState is a snapshot of the handle for Health.
type handleState struct {
	open, closed bool
	file         fileID     // of the open database
	conn         *connector // of the open database
	err          error      // why the last open failed, or why the handle was dropped
}

// Verify checks, like Health, that the handle's files are still the ones at
// the configured path, and repairs the worker's schema. The heartbeat calls
// it before each write.
//
// When the database file is gone or replaced, Verify drops the handle: it
// closes the *sql.DB, without a checkpoint, since the file it would write is
// gone or not the database any more, so that the next Init opens the file
// now at the path, creating a fresh database once the directory exists
// again. Runs holding the old *sql.DB then fail with "sql: database is
// closed" instead of writing where nobody reads.
//
// When the -wal or -shm is gone or replaced, the open connections still
// hold the real ones: the connector is fenced (no new connection, which
// would start a second -wal), the pool is bounded to the connections open,
// and one of them runs wal_checkpoint(TRUNCATE), which copies the removed
// -wal's frames into the database file. Then the handle is dropped the same
// way, and the next Init reopens once none of its connections is left, and
// runs quick_check.
//
// When a table or index of the worker's schema is missing (an operator's
// DROP TABLE), Verify creates it again, and logs it.
//
// Verify returns the error that made it drop the handle, or Health's error
// when the handle is not open; nil when all is well.
func (h *Handle) Verify() error {
	h.mu.Lock()
	err := h.Health() // under mu, so no transition races it
	switch {
	case err != nil && h.cur == nil: // not open (it may say why it was dropped)
		h.mu.Unlock()
		return err
	case errors.Is(err, ErrFileChanged):
		h.logger.Error("Database file changed under the open handle; dropping the handle, the next run reopens it", "path", h.cfg.Path, "err", err)
		// Only what is still linked at the paths now is to be removed: a file
		// already gone frees its inode, which a new file may reuse.
		files := h.files
		if id, _ := statID(h.cfg.Path + "-wal"); id != files.wal {
			files.wal = fileID{}
		}
		if id, _ := statID(h.cfg.Path + "-shm"); id != files.shm {
			files.shm = fileID{}
		}
		h.drop(err, files) // unlocks
		return err
	case errors.Is(err, ErrWALChanged):
		h.recoverWAL(err) // unlocks
		return err
	case err != nil:
		h.mu.Unlock()
		return err
	}
	db := h.cur
	h.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), h.cfg.BusyTimeout+5*time.Second)
	defer cancel()
	missing, err := checkSchema(ctx, db)
	if err != nil {
		return fmt.Errorf("cannot check the schema of %s: %w", h.cfg.Path, err)
	}
	created, err := repairSchema(ctx, db, missing)
	if err != nil {
		return fmt.Errorf("cannot repair the schema of %s: %w", h.cfg.Path, err)
	}
	if len(created) > 0 {
		h.logger.Warn("Database schema repaired", "path", h.cfg.Path, "created", strings.Join(created, ","))
	}
	return nil
}

// recoverFenced is Verify's recovery, run as soon as c fenced itself in
// Connect, rather than at the next heartbeat: unless c is no longer the
// open handle's connector (Verify or Close came first).
func (h *Handle) recoverFenced(c *connector) {
	h.mu.Lock()
	if h.conn != c || h.closed {
		h.mu.Unlock()
		return
	}
	if err := h.Health(); errors.Is(err, ErrWALChanged) {
		h.recoverWAL(err) // unlocks
		return
	}
	h.mu.Unlock()
}

// recoverWAL saves what the connections of a handle whose -wal or -shm
// changed still hold, then drops the handle. Called with mu held; unlocks.
func (h *Handle) recoverWAL(cause error) {
	c, db := h.conn, h.cur
	c.guard.setFence(cause)
	live := c.live.Load()
	h.logger.Error("Database -wal or -shm changed under the open handle; checkpointing through the open connections, then reopening", "path", h.cfg.Path, "err", cause, "connections", live)
	if live > 0 {
		// Conn must wait for a connection in use rather than dial one.
		db.SetMaxOpenConns(int(live))
		ctx, cancel := context.WithTimeout(context.Background(), h.cfg.CloseTimeout)
		var busy, frames, done int64
		conn, err := db.Conn(ctx)
		if err == nil {
			err = conn.QueryRowContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)").Scan(&busy, &frames, &done)
			conn.Close()
		}
		cancel()
		switch {
		case err != nil:
			h.logger.Error("Checkpoint of the removed -wal failed; its last connection to close checkpoints it", "path", h.cfg.Path, "err", err)
		case busy != 0:
			h.logger.Warn("Checkpoint of the removed -wal did not complete; its last connection to close checkpoints it", "path", h.cfg.Path)
		default:
			h.logger.Info("Removed -wal checkpointed into the database", "path", h.cfg.Path)
		}
	}
	h.walDropped = true
	// The database file is the same: nothing of it is to be removed, only
	// its connections waited for.
	h.drop(cause, dbFiles{})
}

// drop closes the open handle for a reopen by the next Init. The next open
// waits until none of its connections is left, and then removes the -wal
// and -shm at the path that are still the old ones (files): SQLite does not
// checkpoint or delete the -wal of a database file that moved, and that
// -wal would be replayed over the file now at the path by the next
// connection to open it. No checkpoint here: the pool might run it on a new
// connection. Called with mu held; unlocks.
func (h *Handle) drop(cause error, files dbFiles) {
	db := h.cur
	h.db.Store(nil)
	h.stale = &staleWAL{conn: h.conn, files: files}
	h.cur, h.conn, h.files = nil, nil, dbFiles{}
	h.pool.Store(nil)
	h.state.Store(&handleState{err: cause})
	// Under mu, so that the next open, which waits for the connections to
	// be gone, does not race the closing of the idle ones. Connections in
	// use are closed when their runs return them.
	if cerr := db.Close(); cerr != nil {
		h.logger.Warn("Dropped handle did not close cleanly", "err", cerr)
	}
	h.mu.Unlock()
	h.retire(db)
}

// dbFiles are the identities of a database's files.
type dbFiles struct{ db, wal, shm fileID }

// staleWAL is what a handle that Verify dropped leaves: connections that runs
// may still hold, and the identities of its -wal and -shm, to be removed
// when they are still at the path (zero: remove nothing).
type staleWAL struct {
	conn  *connector
	files dbFiles
}

// waitStale fails while a connection of the dropped handle is open: it may
// hold the same database file, its fcntl locks and its flock.
func (h *Handle) waitStale() error {
	if h.stale == nil {
		return nil
	}
	if n := h.stale.conn.open.Load(); n > 0 {
		return fmt.Errorf("cannot open database %s: %d connections of the handle it dropped are still in use", h.cfg.Path, n)
	}
	return nil
}

// clearStale removes the -wal and -shm that belong to a dropped database
// file: two databases must never share them. Files at those paths that are
// not the old ones are left alone.
func (h *Handle) clearStale() error {
	if h.stale == nil {
		return nil
	}
	for _, f := range []struct {
		path string
		id   fileID
	}{{h.cfg.Path + "-wal", h.stale.files.wal}, {h.cfg.Path + "-shm", h.stale.files.shm}} {
		if id, err := statID(f.path); err == nil && id == f.id && id != (fileID{}) {
			if err := os.Remove(f.path); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("cannot remove %s of the replaced database: %w", f.path, err)
			}
		}
	}
	h.stale = nil
	return nil
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
