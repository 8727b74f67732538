package db

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/mattn/go-sqlite3"

	"github.com/sqlworker/worker/sqlcount"
)

// DriverName is the database/sql driver name of the counting sqlite3 driver.
// Every *sql.DB opened with it, by this package or by anyone else in the
// process, is counted in Accounting.
const DriverName = "sqlite3-counted"

// accounting is process-wide on purpose: the PERF-408 leak lived in handles
// that nobody registered anywhere, so only the driver sees all of them. The
// Handle's own connectors count into it too.
var accounting sqlcount.Counter

// SQLite3Name is go-sqlite3's own driver name. A build with
// -ldflags "-X github.com/mattn/go-sqlite3.driverName=" (the Makefile's and
// the Dockerfile's) keeps go-sqlite3 from registering it, and this package
// then registers go-sqlite3 counted into Accounting under it: a plain
// sql.Open("sqlite3", ...) anywhere in the process, a Go job's say, counts
// in worker_db_handles_open with its origin. In any other build the name is
// go-sqlite3's and uncounted; worker_db_process_handles_open still sees its
// handles. A program that embeds the worker, builds with the flag and
// registers a "sqlite3" of its own would panic (sql.Register twice, after
// this package's init): it must take another name, or leave this one to
// the worker and be counted.
const SQLite3Name = "sqlite3"

// sqlite3Counted is true when this package registered SQLite3Name.
var sqlite3Counted bool

func init() {
	sql.Register(DriverName, sqlcount.NewDriver(sqliteDriver{}, &accounting))
	// go-sqlite3's init ran first (this package imports it); a second
	// Register of the name would panic.
	if !slices.Contains(sql.Drivers(), SQLite3Name) {
		sql.Register(SQLite3Name, sqlcount.NewDriver(&sqlite3.SQLiteDriver{}, &accounting))
		sqlite3Counted = true
	}
}

// AccountingCounter returns the process-wide accounting itself, for its
// collector (internal/dbmetrics).
func AccountingCounter() *sqlcount.Counter { return &accounting }

// SetOrigins sets the kinds of object whose origins the process-wide
// accounting records (sqlcount's Counter.SetOrigins; by default handles and
// connections), for the benchmark of their cost.
func SetOrigins(kinds ...sqlcount.Kind) { accounting.SetOrigins(kinds...) }

// SQLite3Counted reports whether the driver name "sqlite3" is go-sqlite3
// counted into Accounting (see SQLite3Name).
func SQLite3Counted() bool { return sqlite3Counted }

// Counts is a snapshot of the process-wide driver accounting.
type Counts = sqlcount.Counts

// Accounting returns the process-wide counts of handles, connections and
// statements opened and closed through DriverName and the Handle.
func Accounting() Counts { return accounting.Counts() }

// sqliteDriver is the sqlite3 driver with what is SQLite's own in the
// worker: the _max_page_count DSN parameter, and connections that note
// read-only and corrupt answers. The counting is sqlcount's, around it.
type sqliteDriver struct{}

var (
	_ driver.Driver        = sqliteDriver{}
	_ driver.DriverContext = sqliteDriver{}
)

// Open opens a connection without a connector. database/sql never calls it
// for this driver, because the driver implements DriverContext.
func (sqliteDriver) Open(dsn string) (driver.Conn, error) {
	c, err := (&sqlite3.SQLiteDriver{}).Open(dsn)
	if err != nil {
		return nil, err
	}
	return wrapConn(c.(*sqlite3.SQLiteConn), nil), nil
}

// OpenConnector is called once per sql.Open.
func (sqliteDriver) OpenConnector(dsn string) (driver.Connector, error) {
	dsn, p, err := cutParams(dsn)
	if err != nil {
		return nil, err
	}
	return &connector{dsn: dsn, maxPageCount: p.maxPageCount, noCheckpoints: p.noCheckpoints}, nil
}

// This driver's own DSN parameters, which go-sqlite3 does not have: they
// hold per connection, so the connector sets them on every connection it
// makes.
const (
	// maxPageCountParam is PRAGMA max_page_count.
	maxPageCountParam = "_max_page_count"
	// checkpointParam is the checkpoint mode (CheckpointWorker or
	// CheckpointExternal); see noCheckpoints.
	checkpointParam = "_checkpoint"
)

// connParams are the values of this driver's own DSN parameters.
type connParams struct {
	maxPageCount  int64 // 0: SQLite's own limit
	noCheckpoints bool  // CheckpointExternal
}

// cutParams removes this driver's own parameters from dsn and returns
// their values.
func cutParams(dsn string) (string, connParams, error) {
	var p connParams
	base, query, ok := strings.Cut(dsn, "?")
	if !ok || (!strings.Contains(query, maxPageCountParam) && !strings.Contains(query, checkpointParam)) {
		return dsn, p, nil
	}
	q, err := url.ParseQuery(query)
	if err != nil {
		return "", p, fmt.Errorf("cannot parse dsn: %w", err)
	}
	if q.Has(maxPageCountParam) {
		v := q.Get(maxPageCountParam)
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return "", p, fmt.Errorf("dsn: %s: want a page count, got %q", maxPageCountParam, v)
		}
		p.maxPageCount = n
		q.Del(maxPageCountParam)
	}
	if q.Has(checkpointParam) {
		v := q.Get(checkpointParam)
		if err := checkCheckpointMode(v); err != nil {
			return "", p, fmt.Errorf("dsn: %s: %w", checkpointParam, err)
		}
		p.noCheckpoints = v == CheckpointExternal
		q.Del(checkpointParam)
	}
	if len(q) == 0 {
		return base, p, nil
	}
	return base + "?" + q.Encode(), p, nil
}

// connector counts the connections it has open, for the Handle's Close and
// the release of the lock. The Handle's connector also guards the database's -wal and -shm (guard), owns
// the flock descriptor of the database file (lock), and reports corruption
// (onCorrupt); a connector of a plain sql.Open has none of them.
type connector struct {
	dsn          string
	maxPageCount int64 // PRAGMA max_page_count for every connection; 0: SQLite's
	// noCheckpoints: CheckpointExternal; no connection checkpoints, not
	// even the last to close (see noCheckpoints).
	noCheckpoints bool
	closed        atomic.Bool
	open          atomic.Int64 // connections made and not yet closed
	live          atomic.Int64 // open, less those whose Close has begun

	guard     *walGuard
	onFence   func() // called, in a goroutine of its own, when Connect fences
	onCorrupt func(error)
	lock      *os.File // closed by release, after the last connection
	lockOnce  sync.Once
}

var _ driver.Connector = (*connector)(nil)

func (c *connector) Connect(ctx context.Context) (driver.Conn, error) {
	first := true
	if g := c.guard; g != nil {
		if err := g.fenced(); err != nil {
			return nil, err
		}
		// While a connection is open, the -wal and -shm it uses must still be
		// the ones at the paths: a new connection would otherwise start a
		// second -wal beside the one the others write.
		if first = c.live.Load() == 0; !first {
			if err := g.check(); err != nil {
				if g.setFence(err) && c.onFence != nil {
					// Recover now rather than at the next heartbeat; not
					// here, as the caller may hold what recovery waits for.
					go c.onFence()
				}
				return nil, err
			}
		}
	}
	conn, err := (&sqlite3.SQLiteDriver{}).Open(c.dsn)
	if err != nil {
		return nil, err
	}
	sc := conn.(*sqlite3.SQLiteConn)
	if c.maxPageCount > 0 {
		if _, err := sc.ExecContext(ctx, "PRAGMA max_page_count = "+strconv.FormatInt(c.maxPageCount, 10), nil); err != nil {
			sc.Close()
			return nil, fmt.Errorf("cannot set max_page_count: %w", err)
		}
	}
	if c.noCheckpoints {
		if err := noCheckpoints(ctx, sc); err != nil {
			sc.Close()
			return nil, err
		}
	}
	wc := wrapConn(sc, c)
	if c.guard != nil && first {
		// No connection was open: SQLite may have removed the -wal and -shm
		// when the last one closed, and this one made new ones.
		c.guard.record()
	}
	return wc, nil
}

func (c *connector) Driver() driver.Driver { return sqliteDriver{} }

// Close is called by (*sql.DB).Close, through sqlcount's connector.
func (c *connector) Close() error {
	c.closed.Store(true)
	c.release()
	return nil
}

// release closes the lock descriptor once the connector is closed and none
// of its connections is open: closing it earlier would drop SQLite's fcntl
// locks of the connections still open. Both Close and the last connection's
// Close call it; whichever comes second closes the descriptor.
func (c *connector) release() {
	if c.lock == nil || !c.closed.Load() || c.open.Load() > 0 {
		return
	}
	c.lockOnce.Do(func() { _ = c.lock.Close() })
}

// conn embeds the sqlite3 connection so that every optional interface it
// implements (ConnBeginTx, ConnPrepareContext, ExecerContext, QueryerContext,
// Pinger, ...) is forwarded: hiding one would make database/sql fall back to
// paths where a context no longer interrupts SQLite. It adds Validator.
// sqlcount's wrapper around it forwards exactly these.
type conn struct {
	*sqlite3.SQLiteConn
	connector *connector // nil when opened through Driver.Open
	closed    atomic.Bool
	readonly  atomic.Bool // SQLite answered SQLITE_READONLY: never reuse
}

var (
	_ driver.Conn               = (*conn)(nil)
	_ driver.ConnBeginTx        = (*conn)(nil)
	_ driver.ConnPrepareContext = (*conn)(nil)
	_ driver.ExecerContext      = (*conn)(nil)
	_ driver.QueryerContext     = (*conn)(nil)
	_ driver.Pinger             = (*conn)(nil)
	_ driver.Validator          = (*conn)(nil)
)

func wrapConn(c *sqlite3.SQLiteConn, from *connector) *conn {
	if from != nil {
		from.open.Add(1)
		from.live.Add(1)
	}
	return &conn{SQLiteConn: c, connector: from}
}

// Close closes the connection and, once, counts it closed on its connector.
// On a fenced connector
// (its -wal or -shm was removed or replaced) the connection is told to keep
// the -wal at its path (SQLITE_FCNTL_PERSIST_WAL): the last connection to
// close would otherwise unlink whatever file is at the paths now, which is
// not the one it used. It checkpoints on close then even under
// CheckpointExternal: the removed -wal's frames are in no file any more but
// the open connections'.
func (c *conn) Close() error {
	first := c.closed.CompareAndSwap(false, true)
	if first && c.connector != nil {
		c.connector.live.Add(-1)
		if g := c.connector.guard; g != nil && g.fenced() != nil {
			_ = c.SetFileControlInt("main", sqlite3.SQLITE_FCNTL_PERSIST_WAL, 1)
			if c.connector.noCheckpoints {
				_ = setNoCkptOnClose(c.SQLiteConn, false)
			}
		}
	}
	err := c.SQLiteConn.Close()
	if first && c.connector != nil {
		c.connector.open.Add(-1)
		c.connector.release()
	}
	return err
}

// ExecContext runs the statement and notes a read-only answer.
func (c *conn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	res, err := c.SQLiteConn.ExecContext(ctx, query, args)
	c.note(err)
	return res, err
}

// QueryContext runs the query and notes a read-only answer, its rows'
// too: SQLite steps a query in Rows.Next.
func (c *conn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	r, err := c.SQLiteConn.QueryContext(ctx, query, args)
	c.note(err)
	return c.wrapRows(r), err
}

// PrepareContext prepares the statement and returns it wrapped, so that
// what SQLite answers a prepared statement (a history insert, say) is noted
// as on the connection's own Exec and Query.
func (c *conn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	st, err := c.SQLiteConn.PrepareContext(ctx, query)
	c.note(err)
	if s, ok := st.(*sqlite3.SQLiteStmt); ok && err == nil {
		return &stmt{SQLiteStmt: s, c: c}, nil
	}
	return st, err
}

// Prepare is PrepareContext; database/sql calls PrepareContext.
func (c *conn) Prepare(query string) (driver.Stmt, error) {
	return c.PrepareContext(context.Background(), query)
}

func (c *conn) wrapRows(r driver.Rows) driver.Rows {
	if sr, ok := r.(*sqlite3.SQLiteRows); ok {
		return &rows{SQLiteRows: sr, c: c}
	}
	return r
}

// stmt embeds the sqlite3 statement, so that every optional interface it
// implements is forwarded, and notes its answers on its connection.
type stmt struct {
	*sqlite3.SQLiteStmt
	c *conn
}

var (
	_ driver.StmtExecContext  = (*stmt)(nil)
	_ driver.StmtQueryContext = (*stmt)(nil)
)

// ExecContext runs the statement and notes SQLite's answer.
func (s *stmt) ExecContext(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
	res, err := s.SQLiteStmt.ExecContext(ctx, args)
	s.c.note(err)
	return res, err
}

// QueryContext runs the statement and notes SQLite's answer, its rows' too.
func (s *stmt) QueryContext(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	r, err := s.SQLiteStmt.QueryContext(ctx, args)
	s.c.note(err)
	return s.c.wrapRows(r), err
}

// rows embeds the sqlite3 rows, so that their column type interfaces are
// forwarded, and notes what stepping them answers.
type rows struct {
	*sqlite3.SQLiteRows
	c *conn
}

// Next steps the statement and notes SQLite's answer.
func (r *rows) Next(dest []driver.Value) error {
	err := r.SQLiteRows.Next(dest)
	if err != nil && !errors.Is(err, io.EOF) {
		r.c.note(err)
	}
	return err
}

// note looks at what SQLite answered: a read-only answer makes the
// connection invalid, a corrupt one is reported to the Handle.
func (c *conn) note(err error) {
	if err == nil {
		return // before se, which escapes: no allocation per query
	}
	var se sqlite3.Error
	if !errors.As(err, &se) {
		return
	}
	switch se.Code {
	case sqlite3.ErrReadonly:
		c.readonly.Store(true)
	case sqlite3.ErrCorrupt, sqlite3.ErrNotADB:
		if c.connector != nil && c.connector.onCorrupt != nil {
			c.connector.onCorrupt(err)
		}
	}
}

// IsCorrupt reports whether err is SQLite saying the database file is
// malformed (SQLITE_CORRUPT) or not a database (SQLITE_NOTADB).
func IsCorrupt(err error) bool {
	var se sqlite3.Error
	return errors.As(err, &se) && (se.Code == sqlite3.ErrCorrupt || se.Code == sqlite3.ErrNotADB)
}

// IsValid implements driver.Validator. SQLite opens a connection read-only,
// silently, when the file is not writable at that moment, and it stays
// read-only for its life: database/sql must drop it rather than reuse it, so
// that writes work again as soon as the file is writable.
func (c *conn) IsValid() bool { return !c.readonly.Load() }

// IsStorageError reports whether err is SQLite saying that the database
// itself cannot be written or read: full, read-only, an I/O error, a file it
// cannot open, or corruption. Such an error is not the fault of the SQL that
// got it, and every other write would get it too. A busy or locked database
// is not a storage error: it passes when the lock holder lets go.
func IsStorageError(err error) bool {
	var se sqlite3.Error
	if !errors.As(err, &se) {
		return false
	}
	switch se.Code {
	case sqlite3.ErrFull, sqlite3.ErrReadonly, sqlite3.ErrIoErr, sqlite3.ErrCantOpen,
		sqlite3.ErrNotADB, sqlite3.ErrCorrupt:
		return true
	}
	return false
}
