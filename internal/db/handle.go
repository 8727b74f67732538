// Package db owns the worker's one shared SQLite handle: an idempotent Init
// that opens it once, a driver that counts every handle and connection of
// the process, and the migrations of the worker's own tables.
package db

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sqlworker/worker/internal/leak"
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
	lock   *os.File   // flock held while open
	conn   *connector // the open handle's connector, which counts its connections
	files  dbFiles    // identities of the files the handle opened
	stale  *staleWAL  // left behind by a handle dropped because its file was replaced
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

// LockPath returns the path of the single-instance lock file.
func (h *Handle) LockPath() string { return h.cfg.Path + ".lock" }

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
	h.state.Store(&handleState{open: true, file: h.files.db})
	h.db.Store(db)
	h.opened.Add(1)
	h.logger.Info("Database opened", "path", h.cfg.Path, "max_open_conns", h.cfg.MaxOpenConns)
	return db, nil
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
	if err := h.acquireLock(); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			h.releaseLock()
		}
	}()

	if err := h.clearStale(); err != nil {
		return nil, err
	}
	c, err := (&Driver{}).OpenConnector(h.DSN())
	if err != nil {
		return nil, fmt.Errorf("cannot open database %s: %w", h.cfg.Path, err)
	}
	h.conn = c.(*connector)
	db := sql.OpenDB(c)
	db.SetMaxOpenConns(h.cfg.MaxOpenConns)
	db.SetMaxIdleConns(h.cfg.MaxOpenConns)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("cannot open database %s: %w", h.cfg.Path, err)
	}
	if err := Migrate(ctx, db); err != nil {
		db.Close()
		return nil, fmt.Errorf("cannot migrate database %s: %w", h.cfg.Path, err)
	}
	// The pool holds the files open now, so these are the ones SQLite uses.
	if h.files.db, err = statID(h.cfg.Path); err != nil {
		db.Close()
		return nil, fmt.Errorf("cannot open database %s: %w", h.cfg.Path, err)
	}
	h.files.wal, _ = statID(h.cfg.Path + "-wal")
	h.files.shm, _ = statID(h.cfg.Path + "-shm")
	return db, nil
}

// acquireLock takes an exclusive flock on the lock file beside the database,
// so that a second worker on the same database refuses to start instead of
// running every job twice.
func (h *Handle) acquireLock() error {
	path := h.LockPath()
	if dir := filepath.Dir(path); dir != "" {
		if fi, err := os.Stat(dir); err != nil {
			return fmt.Errorf("cannot open database %s: directory %s: %w", h.cfg.Path, dir, errors.Unwrap(err))
		} else if !fi.IsDir() {
			return fmt.Errorf("cannot open database %s: %s is not a directory", h.cfg.Path, dir)
		}
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return fmt.Errorf("cannot create lock file %s: %w", path, errors.Unwrap(err))
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		holder := ""
		if b, rerr := os.ReadFile(path); rerr == nil && len(strings.TrimSpace(string(b))) > 0 {
			holder = " (pid " + strings.TrimSpace(string(b)) + ")"
		}
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return fmt.Errorf("%w: lock file %s is held%s", ErrLocked, path, holder)
		}
		return fmt.Errorf("cannot lock %s: %w", path, err)
	}
	// The pid helps an operator find the other worker; the lock is the flock.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	h.lock = f
	return nil
}

func (h *Handle) releaseLock() {
	if h.lock == nil {
		return
	}
	_ = unix.Flock(int(h.lock.Fd()), unix.LOCK_UN)
	_ = h.lock.Close()
	h.lock = nil
}

// Close checkpoints the WAL, closes the handle and releases the lock.
// It is safe to call more than once and on a handle that never opened;
// Init returns ErrClosed afterwards.
func (h *Handle) Close(ctx context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil
	}
	h.closed = true
	h.state.Store(&handleState{closed: true})
	db := h.db.Swap(nil)
	if db == nil {
		h.releaseLock()
		return nil
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
	closed := make(chan error, 1)
	go func() { closed <- db.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			errs = append(errs, fmt.Errorf("cannot close database: %w", err))
		}
	case <-ctx.Done():
		errs = append(errs, fmt.Errorf("%w after %s", ErrCloseTimeout, h.cfg.CloseTimeout))
	}
	h.releaseLock()
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
// configured path now. SQLite goes on reading and writing a database file
// that was unlinked or replaced under it, and every statement succeeds while
// the data goes nowhere anyone can see; Health notices by comparing device
// and inode numbers. It does no more than one stat and never changes the
// handle: Verify does that.
// It takes no lock.
func (h *Handle) Health() error {
	st := h.state.Load()
	switch {
	case st == nil:
		return ErrNotOpen
	case st.closed:
		return ErrClosed
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
	return nil
}

// handleState is a snapshot of the handle for Health.
type handleState struct {
	open, closed bool
	file         fileID // of the open database
	err          error  // why the last open failed, or why the handle was dropped
}

// Verify checks, like Health, that the handle's file is still the one at the
// configured path. When it is not, Verify drops the handle: it closes the
// *sql.DB, without a checkpoint, since the file it would write is gone or not
// the database any more, and releases the lock, so that the next Init opens
// the file now at the path, creating a fresh database once the directory
// exists again. Runs holding the old *sql.DB then fail with "sql: database
// is closed" instead of writing where nobody reads. Verify returns the error
// that made it drop the handle, or Health's error when the handle is not
// open; nil when all is well.
func (h *Handle) Verify() error {
	h.mu.Lock()
	err := h.Health() // under mu, so no transition races it
	if !errors.Is(err, ErrFileChanged) {
		h.mu.Unlock()
		return err
	}
	db := h.db.Swap(nil)
	h.logger.Error("Database file changed under the open handle; dropping the handle, the next run reopens it", "path", h.cfg.Path, "err", err)
	if _, serr := os.Stat(h.cfg.Path); serr == nil {
		// Replaced, not removed. SQLite does not checkpoint or delete the
		// -wal of a database file that moved, and that -wal, still at the
		// path, would be replayed over the new file by the next connection
		// to open it; so the next open waits until no connection to the old
		// file is left and removes the old -wal and -shm first. No
		// checkpoint here: the pool might run it on a new connection, which
		// would open the new file with the old -wal.
		h.stale = &staleWAL{conn: h.conn, files: h.files}
	}
	h.releaseLock()
	h.conn, h.files = nil, dbFiles{}
	h.state.Store(&handleState{err: err})
	h.mu.Unlock()
	if cerr := db.Close(); cerr != nil {
		h.logger.Warn("Dropped handle did not close cleanly", "err", cerr)
	}
	h.retire(db)
	return err
}

// dbFiles are the identities of a database's files.
type dbFiles struct{ db, wal, shm fileID }

// staleWAL is what a handle dropped because its file was replaced leaves at
// the path: its -wal and -shm, and connections that runs may still hold.
type staleWAL struct {
	conn  *connector
	files dbFiles
}

// clearStale removes the -wal and -shm that belong to a replaced database,
// once none of its connections is open: two databases must never share them.
// Files at those paths that are not the old ones are left alone.
func (h *Handle) clearStale() error {
	if h.stale == nil {
		return nil
	}
	if n := h.stale.conn.open.Load(); n > 0 {
		return fmt.Errorf("cannot open database %s: %d connections to the database file it replaced are still in use", h.cfg.Path, n)
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
	if db := h.db.Load(); db != nil {
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
