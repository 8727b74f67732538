package sqlcount

//go:generate go run ./internal/gen -o wrap_gen.go

import (
	"context"
	"database/sql/driver"
	"io"
	"sync/atomic"
)

// Counter holds the counts of handles, connections and prepared statements
// opened and closed through the wrappers that count into it. Its zero value
// is ready to use, and it is safe for concurrent use. A Counter must not be
// copied after first use.
//
// Counts belong to the Counter, not to a wrapper: give every wrapper of the
// process the same Counter for process-wide counts (the worker does), or each
// wrapper its own to tell them apart.
type Counter struct {
	handlesOpened, handlesClosed atomic.Uint64
	connsOpened, connsClosed     atomic.Uint64
	stmtsPrepared, stmtsClosed   atomic.Uint64
	originsOff                   atomic.Uint32 // kinds whose origins are not recorded, XOR defaultMask
}

// Counts is a snapshot of a Counter.
type Counts struct {
	HandlesOpened      uint64 // connectors created, one per *sql.DB
	HandlesClosed      uint64 // connectors closed, by (*sql.DB).Close
	ConnectionsOpened  uint64 // driver connections opened
	ConnectionsClosed  uint64 // driver connections closed
	StatementsPrepared uint64 // driver statements prepared explicitly
	StatementsClosed   uint64 // driver statements closed
}

// HandlesOpen returns the handles open at the time of the snapshot.
func (c Counts) HandlesOpen() uint64 { return c.HandlesOpened - c.HandlesClosed }

// ConnectionsOpen returns the connections open at the time of the snapshot.
func (c Counts) ConnectionsOpen() uint64 { return c.ConnectionsOpened - c.ConnectionsClosed }

// StatementsOpen returns the prepared statements open at the time of the
// snapshot.
func (c Counts) StatementsOpen() uint64 { return c.StatementsPrepared - c.StatementsClosed }

// Counts returns a snapshot of the counts. Each closed count is read before
// its opened count, so that an open count (opened - closed) never underflows
// while handles open and close concurrently.
func (c *Counter) Counts() Counts {
	hc := c.handlesClosed.Load()
	cc := c.connsClosed.Load()
	sc := c.stmtsClosed.Load()
	return Counts{
		HandlesOpened:      c.handlesOpened.Load(),
		HandlesClosed:      hc,
		ConnectionsOpened:  c.connsOpened.Load(),
		ConnectionsClosed:  cc,
		StatementsPrepared: c.stmtsPrepared.Load(),
		StatementsClosed:   sc,
	}
}

// NewConnector returns base wrapped so that the handle, every connection
// and every explicitly prepared statement opened through it count into c.
// The handle counts as opened now and as closed at the returned connector's
// Close, which (*sql.DB).Close calls; it calls base's Close too, when base
// implements io.Closer. Give the result to sql.OpenDB, once: each connector
// counts as one handle.
//
// The connections it returns implement exactly the optional interfaces of
// package driver that base's connections implement, and so do its
// statements. NewConnector panics when c is nil.
func NewConnector(base driver.Connector, c *Counter) driver.Connector {
	if c == nil {
		panic("sqlcount: NewConnector with a nil Counter")
	}
	return newConnector(base, &countingDriver{base: base.Driver(), counter: c}, c)
}

// NewDriver returns base wrapped so that every *sql.DB that sql.Open opens
// with it counts into c, with its connections and prepared statements, as
// NewConnector does. Register it under a name of its own with sql.Register.
//
// The returned driver implements driver.DriverContext even when base does
// not: its OpenConnector is where a handle is counted. database/sql then
// calls base's Open for each connection, as it would have. A connection
// opened by the driver's Open directly counts as a connection with no
// handle. NewDriver panics when c is nil.
func NewDriver(base driver.Driver, c *Counter) driver.Driver {
	if c == nil {
		panic("sqlcount: NewDriver with a nil Counter")
	}
	return &countingDriver{base: base, counter: c}
}

// countingDriver is NewDriver's driver.
type countingDriver struct {
	base    driver.Driver
	counter *Counter
}

var (
	_ driver.Driver        = (*countingDriver)(nil)
	_ driver.DriverContext = (*countingDriver)(nil)
)

// Unwrap returns the driver it wraps, for callers that need its type.
func (d *countingDriver) Unwrap() driver.Driver { return d.base }

// Open opens a connection of base and counts it.
func (d *countingDriver) Open(name string) (driver.Conn, error) {
	c, err := d.base.Open(name)
	if err != nil {
		return nil, err
	}
	return wrapConn(c, d.counter, nil), nil
}

// OpenConnector returns a counting connector for name: base's own, when
// base implements driver.DriverContext.
func (d *countingDriver) OpenConnector(name string) (driver.Connector, error) {
	var base driver.Connector = dsnConnector{name: name, driver: d.base}
	if dc, ok := d.base.(driver.DriverContext); ok {
		var err error
		if base, err = dc.OpenConnector(name); err != nil {
			return nil, err
		}
	}
	return newConnector(base, d, d.counter), nil
}

// dsnConnector is database/sql's connector for a driver without
// DriverContext: each Connect opens name.
type dsnConnector struct {
	name   string
	driver driver.Driver
}

func (c dsnConnector) Connect(context.Context) (driver.Conn, error) { return c.driver.Open(c.name) }
func (c dsnConnector) Driver() driver.Driver                        { return c.driver }

// connector counts its connections and its own close.
type connector struct {
	base    driver.Connector
	driver  *countingDriver
	counter *Counter
	closed  atomic.Bool
	origin  *record // nil when not recorded
}

var (
	_ driver.Connector = (*connector)(nil)
	_ io.Closer        = (*connector)(nil)
)

func newConnector(base driver.Connector, d *countingDriver, c *Counter) *connector {
	c.handlesOpened.Add(1)
	openedCounts[Handles].Add(1)
	return &connector{base: base, driver: d, counter: c, origin: c.track(Handles)}
}

// Connect opens a connection of base and counts it.
func (c *connector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.base.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return wrapConn(conn, c.counter, c.origin), nil
}

// Driver returns the counting driver over base's.
func (c *connector) Driver() driver.Driver { return c.driver }

// Close counts the handle closed, once, and closes base when it is an
// io.Closer. (*sql.DB).Close calls it.
func (c *connector) Close() error {
	if c.closed.CompareAndSwap(false, true) {
		c.counter.handlesClosed.Add(1)
		forget(c.origin)
	}
	if cl, ok := c.base.(io.Closer); ok {
		return cl.Close()
	}
	return nil
}

// conn is the wrapper of a connection that implements none of the optional
// interfaces; the generated types embed it and add those base implements.
type conn struct {
	base    driver.Conn
	counter *Counter
	closed  atomic.Bool
	origin  *record // nil when not recorded
}

// wrapConn counts c opened, a connection of the handle whose origin is h
// (nil: none recorded), and returns it wrapped in the type that implements
// exactly the optional interfaces c implements.
func wrapConn(c driver.Conn, counter *Counter, h *record) driver.Conn {
	counter.connsOpened.Add(1)
	openedCounts[Connections].Add(1)
	return connWrappers[connMask(c)](&conn{base: c, counter: counter, origin: counter.trackConn(h)})
}

// Unwrap returns the driver's own connection, for (*sql.Conn).Raw users
// that need its type: every wrapped connection has this method.
func (c *conn) Unwrap() driver.Conn { return c.base }

// Prepare prepares a statement of base and counts it.
func (c *conn) Prepare(query string) (driver.Stmt, error) {
	s, err := c.base.Prepare(query)
	if err != nil {
		return nil, err
	}
	return wrapStmt(s, c.counter), nil
}

// Begin is base's Begin.
func (c *conn) Begin() (driver.Tx, error) { return c.base.Begin() } //nolint:staticcheck // forwarded

// Close closes base and counts the connection closed, once.
func (c *conn) Close() error {
	err := c.base.Close()
	if c.closed.CompareAndSwap(false, true) {
		c.counter.connsClosed.Add(1)
		forget(c.origin)
	}
	return err
}

// prepareContext implements driver.ConnPrepareContext for a conn whose base
// does: it counts the statement.
type prepareContext struct{ c *conn }

// PrepareContext prepares a statement of base and counts it.
func (p prepareContext) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	s, err := p.c.base.(driver.ConnPrepareContext).PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	return wrapStmt(s, p.c.counter), nil
}

// stmt is the wrapper of a statement that implements none of the optional
// interfaces; the generated types embed it.
type stmt struct {
	base    driver.Stmt
	counter *Counter
	closed  atomic.Bool
	origin  *record // nil when not recorded
}

func wrapStmt(s driver.Stmt, counter *Counter) driver.Stmt {
	counter.stmtsPrepared.Add(1)
	openedCounts[Statements].Add(1)
	return stmtWrappers[stmtMask(s)](&stmt{base: s, counter: counter, origin: counter.track(Statements)})
}

// Close closes base and counts the statement closed, once.
func (s *stmt) Close() error {
	err := s.base.Close()
	if s.closed.CompareAndSwap(false, true) {
		s.counter.stmtsClosed.Add(1)
		forget(s.origin)
	}
	return err
}

// NumInput is base's NumInput.
func (s *stmt) NumInput() int { return s.base.NumInput() }

// Exec is base's Exec.
func (s *stmt) Exec(args []driver.Value) (driver.Result, error) { return s.base.Exec(args) } //nolint:staticcheck // forwarded

// Query is base's Query.
func (s *stmt) Query(args []driver.Value) (driver.Rows, error) { return s.base.Query(args) } //nolint:staticcheck // forwarded

// columnConverter implements driver.ColumnConverter for a stmt whose base
// does. An embedded driver.ColumnConverter would not: the field's name, the
// interface's, would hide the method of the same name.
type columnConverter struct {
	base driver.ColumnConverter //nolint:staticcheck // deprecated, still used by database/sql
}

// ColumnConverter is base's ColumnConverter.
func (c columnConverter) ColumnConverter(idx int) driver.ValueConverter { //nolint:staticcheck // forwarded
	return c.base.ColumnConverter(idx) //nolint:staticcheck // forwarded
}
