package db

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sqlworker/worker/internal/schema"
	"github.com/sqlworker/worker/sqlcount"
)

// This file is what the Handle does that is SQLite's own: the file and its
// pragmas (DSN), the flock, the read-only inspection and repair before the
// first write, the WAL checkpoint at close, and the checks that the file and
// its -wal and -shm are still the ones open, with the recovery when they
// are not. The lifecycle around it (handle.go), the counting (sqlcount) and
// the history writes (internal/jobhistory) are every backend's; the
// migrations are each engine's (both in internal/schema); backend says what
// PostgreSQL provides instead (postgres.go).

// backend is the seam between the shared lifecycle of a Handle and what is
// the engine's own. Here the Handle's methods in this file implement it for
// SQLite; PostgreSQL has a type of its own behind it (postgres.go).
type backend interface {
	// open opens, inspects, repairs and migrates the database, and returns
	// the pool; it runs under the Handle's lock.
	open(ctx context.Context) (*sql.DB, error)
	// checkpoint runs before the pool closes (SQLite: wal_checkpoint).
	checkpoint(ctx context.Context, db *sql.DB) error
	// checkFiles is Health's part after the lifecycle (SQLite: the file
	// and its -wal and -shm are the ones open). It must not block.
	checkFiles(st *handleState) error
	// pending returns a func that reports the connections of the pool
	// open now that are not closed yet; Close waits for 0. Called under
	// the Handle's lock, before the pool is forgotten.
	pending() func() int64
	// stop stops what the backend runs beside the pool (PostgreSQL: the
	// server check), before the pool closes; under the Handle's lock.
	stop()
}

var _ backend = (*Handle)(nil)

// checkpoint copies the WAL into the database file and truncates it:
// TRUNCATE leaves an empty -wal behind, closing the last connection then
// removes it, so a stopped worker leaves one self-contained file. Under
// CheckpointExternal it does nothing: the -wal stays, with its frames, for
// the process that checkpoints (Litestream), and no connection checkpoints
// as it closes (noCheckpoints).
func (h *Handle) checkpoint(ctx context.Context, db *sql.DB) error {
	if h.cfg.Checkpoint == CheckpointExternal {
		return nil
	}
	if _, err := db.ExecContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
		return fmt.Errorf("cannot checkpoint wal: %w", err)
	}
	return nil
}

// stop does nothing: SQLite runs nothing beside the pool.
func (h *Handle) stop() {}

// pending reports the connections of the open pool's connector.
func (h *Handle) pending() func() int64 {
	c := h.conn
	if c == nil {
		return func() int64 { return 0 }
	}
	return c.open.Load
}

// checkFiles reports whether the database file at the path is the one
// open, and the -wal and -shm the connections use, by device and inode.
func (h *Handle) checkFiles(st *handleState) error {
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
	if h.cfg.Checkpoint == CheckpointExternal {
		q.Set(checkpointParam, CheckpointExternal)
	}
	return "file:" + (&url.URL{Path: h.cfg.Path}).EscapedPath() + "?" + q.Encode()
}

func (h *Handle) open(ctx context.Context) (_ *sql.DB, err error) {
	if strings.ContainsAny(h.cfg.Path, "?#") {
		return nil, fmt.Errorf("cannot open database %s: path must not contain '?' or '#'", h.cfg.Path)
	}
	if err := checkCheckpointMode(h.cfg.Checkpoint); err != nil {
		return nil, fmt.Errorf("cannot open database %s: %w", h.cfg.Path, err)
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
	missing, err := schema.Inspect(ctx, h.cfg.Path, lock)
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
	if err := h.prepare(ctx, db, missing); err != nil {
		return nil, err
	}
	// The pool holds the file open now: it must be the one locked.
	if now, err := statID(h.cfg.Path); err != nil {
		return nil, fmt.Errorf("cannot open database %s: %w", h.cfg.Path, err)
	} else if now != id {
		return nil, fmt.Errorf("cannot open database %s: the file was replaced while it opened", h.cfg.Path)
	}
	if h.walDropped {
		if err := h.checkReopened(ctx, db); err != nil {
			return nil, err
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

// prepare pings a new pool, repairs the tables inspect found missing and
// migrates the schema.
func (h *Handle) prepare(ctx context.Context, db *sql.DB, missing []schema.Object) error {
	if err := db.PingContext(ctx); err != nil {
		return fmt.Errorf("cannot open database %s: %w", h.cfg.Path, err)
	}
	if created, err := schema.Repair(ctx, db, missing); err != nil {
		return fmt.Errorf("cannot repair database %s: %w", h.cfg.Path, err)
	} else if len(created) > 0 {
		h.logger.Warn("Database schema repaired", "path", h.cfg.Path, "created", strings.Join(created, ","))
	}
	if err := schema.MigrateSQLite(ctx, db); err != nil {
		return fmt.Errorf("cannot migrate database %s: %w", h.cfg.Path, err)
	}
	return nil
}

// checkReopened says whether a database reopened after its -wal or -shm
// was removed is sound. The check reads the whole file, so it is bounded:
// on a large database the quick_check job finishes it.
func (h *Handle) checkReopened(ctx context.Context, db *sql.DB) error {
	qctx, cancel := context.WithTimeout(ctx, h.cfg.CloseTimeout)
	var check string
	err := db.QueryRowContext(qctx, "PRAGMA quick_check(1)").Scan(&check)
	cancel()
	switch {
	case err != nil && qctx.Err() != nil && ctx.Err() == nil:
		h.logger.Warn("Database reopened after its -wal or -shm changed; quick_check did not finish in time", "path", h.cfg.Path, "timeout", h.cfg.CloseTimeout)
	case err != nil:
		return fmt.Errorf("cannot check database %s: %w", h.cfg.Path, err)
	case check != "ok":
		h.markCorrupt(errors.New("quick_check: " + check))
		return h.Corrupt()
	default:
		h.logger.Info("Database reopened after its -wal or -shm changed; quick_check ok", "path", h.cfg.Path)
	}
	return nil
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
// -wal's frames into the database file; under CheckpointExternal too, as
// the frames are in no file but the connections', and a process that
// replicated the removed -wal has lost its place in it anyway. Then the handle is dropped the same
// way, and the next Init reopens once none of its connections is left, and
// runs quick_check.
//
// When a table or index of the worker's schema is missing (an operator's
// DROP TABLE), Verify creates it again, and logs it.
//
// On PostgreSQL, Verify is Health: there are no files to check.
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
	if h.Postgres() {
		return nil // the server owns its files; the schema is the migrations'
	}
	ctx, cancel := context.WithTimeout(context.Background(), h.cfg.BusyTimeout+5*time.Second)
	defer cancel()
	missing, err := schema.Check(ctx, db)
	if err != nil {
		return fmt.Errorf("cannot check the schema of %s: %w", h.cfg.Path, err)
	}
	created, err := schema.Repair(ctx, db, missing)
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
