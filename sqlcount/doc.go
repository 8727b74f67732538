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
// the wrapped driver a name of its own and use only that one, or, for
// go-sqlite3, build with -ldflags "-X github.com/mattn/go-sqlite3.driverName="
// and register the wrapped driver as "sqlite3" yourself. ProcessHandles
// counts the *sql.DB handles of every driver, wrapped or not, and
// ProcessCollector exports the count.
//
// # Origins
//
// Each counted handle and connection keeps the program counters of the call
// that opened it (runtime.Callers; symbolised only when reported), until
// it is closed;
// statements too when the Counter is told to (SetOrigins), as a statement
// is prepared far more often.
// Counter.Origins groups the open objects by their site, the first frame
// outside database/sql, the drivers and sqlcount, with their count and the
// oldest's age; OpenObjects lists them one by one, for every Counter of the
// process. They are also the runtime/pprof profiles "sqlcount.handles",
// "sqlcount.conns" and "sqlcount.stmts" (Kind.ProfileName), registered when
// the package is initialised, which net/http/pprof serves under
// /debug/pprof/ and go tool pprof reads and diffs (-base). Adding to a
// pprof profile walks the stack once more, with the runtime's unwinder, and
// that is most of what origins cost: a program that serves no pprof can
// leave the profiles out with SetProfiles(false).
//
// A connection that database/sql opens in its own connectionOpener
// goroutine (for a caller that waited for a free slot, after a connection
// was discarded) has no frame of the program on its stack. Origins and
// OpenObjects give it its handle's origin (Object.Attributed). The pprof
// profile cannot: pprof.Profile.Add records the stack of the goroutine that
// calls it and takes no other, so in "sqlcount.conns" such a connection
// shows under database/sql.(*DB).connectionOpener. Handles are always opened
// on the caller's goroutine.
//
// Package sqlcounttest turns the origins into test checks, as goleak does
// for goroutines.
//
// The API is v0: it may change until 1.0.
package sqlcount
