// Package sqlcount counts the *sql.DB handles, driver connections and
// prepared statements that a program opens through any database/sql driver,
// and exports the counts to Prometheus. It catches the leak that pool
// statistics cannot see: a handle opened per call and never closed
// (PERF-408), which no one registered with a collector, shows as
// worker_db_handles_open and worker_db_connections_open rising by one per
// call.
//
// Wrap a driver.Connector with NewConnector, or a driver.Driver with
// NewDriver and register it under a name of its own, counting into a
// Counter; then register NewCollector(counter) with a prometheus.Registerer.
// One Counter for every wrapper gives process-wide counts; a Counter per
// wrapper, each Collector with WithConstLabels, tells them apart.
//
// A handle is a connector: it counts as opened when NewConnector or the
// driver's OpenConnector (sql.Open) creates it, and as closed at the
// connector's Close, which (*sql.DB).Close calls. Connections count at
// Connect and at their Close, statements at an explicit Prepare
// ((*sql.DB).Prepare, (*sql.Conn).PrepareContext, ...) and at their Close;
// db.Query with arguments goes through the driver's QueryerContext when it
// has one, and prepares nothing that is counted.
//
// A wrapped connection implements exactly the optional interfaces of
// package driver that the wrapped one implements (Pinger, ExecerContext,
// QueryerContext, ConnPrepareContext, ConnBeginTx, SessionResetter,
// Validator, NamedValueChecker, Execer, Queryer), and a wrapped statement
// those of its statement (StmtExecContext, StmtQueryContext,
// NamedValueChecker, ColumnConverter): database/sql takes the same paths with
// the wrapper as without, so context cancellation, session resets and
// driver-specific argument types keep working. A generated type for each
// combination does it (wrap_gen.go). A wrapped connection also has
// Unwrap() driver.Conn, for code that needs the driver's own connection
// from (*sql.Conn).Raw, and the wrapping driver, (*sql.DB).Driver(), has
// Unwrap() driver.Driver, for code that tells drivers apart by type.
//
// With pgx, wrap stdlib.GetConnector(config), not a pgxpool connector: the
// pool's Connect and Close only borrow and return its own connections. A
// handle opened under a driver's own name (sql.Open("pgx", ...),
// sql.Open("sqlite3", ...)) bypasses the wrapper and is not counted: give
// the wrapped driver a name of its own and use only that one.
//
// The API is v0: it may change until 1.0.
package sqlcount
