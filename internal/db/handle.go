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
)

// Errors returned by Handle.
var (
	ErrClosed = errors.New("database handle is closed")
	ErrLocked = errors.New("database is in use by another worker")
)

// Config holds the settings of a Handle.
type Config struct {
	Path         string        // path of the database file; created if missing
	MaxOpenConns int           // pool bound; connections can never exceed it
	BusyTimeout  time.Duration // how long a statement waits for a lock
	Logger       *slog.Logger
}

// Handle is the one shared *sql.DB of the process. Init opens it on the first
// successful call and returns the same *sql.DB on every later call.
type Handle struct {
	cfg    Config
	logger *slog.Logger

	db atomic.Pointer[sql.DB] // set once open; the lock-free fast path

	mu     sync.Mutex // serialises the slow path and Close
	closed bool
	lock   *os.File // flock held while open

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
		return nil, err
	}
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

	db, err := sql.Open(DriverName, h.DSN())
	if err != nil {
		return nil, fmt.Errorf("cannot open database %s: %w", h.cfg.Path, err)
	}
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
	db := h.db.Swap(nil)
	if db == nil {
		h.releaseLock()
		return nil
	}
	var errs []error
	// TRUNCATE leaves an empty -wal behind; closing the last connection then
	// removes it, so a stopped worker leaves one self-contained file.
	if _, err := db.ExecContext(context.WithoutCancel(ctx), "PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
		errs = append(errs, fmt.Errorf("cannot checkpoint wal: %w", err))
	}
	if err := db.Close(); err != nil {
		errs = append(errs, fmt.Errorf("cannot close database: %w", err))
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
