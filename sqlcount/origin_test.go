package sqlcount_test

import (
	"bytes"
	"context"
	"database/sql"
	"database/sql/driver"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mattn/go-sqlite3"

	"github.com/sqlworker/worker/sqlcount"
)

// originCounter is the Counter of the driver "sqlite3-origins", which the
// origin tests open handles on with sql.Open, as a program would.
var (
	originCounter  sqlcount.Counter
	originRegister sync.Once
)

func originDriver() string {
	originRegister.Do(func() {
		sql.Register("sqlite3-origins", sqlcount.NewDriver(&sqlite3.SQLiteDriver{}, &originCounter))
	})
	return "sqlite3-origins"
}

// openPerCall opens a handle and a connection on every call and keeps them:
// PERF-408's initDb. It returns the lines of its sql.Open and its Ping.
func openPerCall(t *testing.T, dsn string, keep *[]*sql.DB) (openLine, pingLine int) {
	t.Helper()
	_, _, line, _ := runtime.Caller(0)
	db, err := sql.Open(originDriver(), dsn) // line+1
	if err != nil {
		t.Fatal(err)
	}
	*keep = append(*keep, db)
	if err := db.Ping(); err != nil { // line+6
		t.Fatal(err)
	}
	return line + 1, line + 6
}

func closeAll(dbs []*sql.DB) {
	for _, db := range dbs {
		db.Close()
	}
}

// Ensure each open handle and connection keeps the site that opened it, and
// that Origins groups them there with their count, and forgets them at
// Close.
func TestCounter_Origins(t *testing.T) {
	dsn := sqliteDSN(t)
	var dbs []*sql.DB
	defer func() { closeAll(dbs) }()
	start := time.Now()
	var openLine, pingLine int
	for range 3 {
		openLine, pingLine = openPerCall(t, dsn, &dbs)
	}
	got := originCounter.Origins()
	if len(got) != 2 {
		t.Fatalf("origins: got %d, want 2 (handles, connections):\n%v", len(got), got)
	}
	for i, want := range []struct {
		kind sqlcount.Kind
		line int
	}{{sqlcount.Handles, openLine}, {sqlcount.Connections, pingLine}} {
		o := got[i]
		if o.Kind != want.kind || o.Count != 3 || !strings.HasSuffix(o.Function, ".openPerCall") ||
			!strings.HasSuffix(o.File, "/origin_test.go") || o.Line != want.line {
			t.Errorf("origin %d: got %v, want 3 %ss open from sqlcount_test.openPerCall (origin_test.go:%d)", i, o, want.kind, want.line)
		}
		if o.Oldest.Before(start) || o.Oldest.After(time.Now()) {
			t.Errorf("origin %d: oldest %v, want since the test's start %v", i, o.Oldest, start)
		}
		if len(o.Stack) == 0 || !strings.HasPrefix(o.Stack[0].Function, "github.com/sqlworker/worker/sqlcount.") {
			t.Errorf("origin %d: stack %v, want one from sqlcount's frame", i, o.Stack)
		}
	}
	closeAll(dbs)
	dbs = nil
	if got := originCounter.Origins(); len(got) != 0 {
		t.Errorf("origins after Close: got %v, want none", got)
	}
}

// profileCount returns the count of the pprof profile name and its text
// (debug=1), which lists the stacks.
func profileCount(t *testing.T, name string) (int, string) {
	t.Helper()
	p := pprof.Lookup(name)
	if p == nil {
		t.Fatalf("pprof.Lookup(%q): got nil, want a profile", name)
	}
	var b bytes.Buffer
	if err := p.WriteTo(&b, 1); err != nil {
		t.Fatal(err)
	}
	return p.Count(), b.String()
}

// Ensure the runtime/pprof profiles sqlcount.handles and sqlcount.conns hold
// each open handle and connection with the stack of its open, and drop it
// at Close; sqlcount.stmts holds statements when asked to.
func TestCounter_Profiles(t *testing.T) {
	dsn := sqliteDSN(t)
	h0, _ := profileCount(t, "sqlcount.handles")
	c0, _ := profileCount(t, "sqlcount.conns")
	s0, _ := profileCount(t, "sqlcount.stmts")
	var dbs []*sql.DB
	defer func() { closeAll(dbs) }()
	for range 2 {
		openPerCall(t, dsn, &dbs)
	}
	originCounter.SetOrigins(sqlcount.Handles, sqlcount.Connections, sqlcount.Statements)
	defer originCounter.SetOrigins(sqlcount.DefaultOrigins...)
	st, err := dbs[0].Prepare("SELECT 1")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		base int
		want int
	}{{"sqlcount.handles", h0, 2}, {"sqlcount.conns", c0, 2}, {"sqlcount.stmts", s0, 1}} {
		n, text := profileCount(t, c.name)
		if n-c.base != c.want {
			t.Errorf("%s: got %d more, want %d", c.name, n-c.base, c.want)
		}
		if !strings.Contains(text, "sqlcount_test.TestCounter_Profiles") {
			t.Errorf("%s: got no stack of the test, want one:\n%s", c.name, text)
		}
	}
	st.Close()
	closeAll(dbs)
	dbs = nil
	for _, c := range []struct {
		name string
		base int
	}{{"sqlcount.handles", h0}, {"sqlcount.conns", c0}, {"sqlcount.stmts", s0}} {
		if n, text := profileCount(t, c.name); n != c.base {
			t.Errorf("%s after Close: got %d, want %d:\n%s", c.name, n, c.base, text)
		}
	}
}

// Ensure SetOrigins() records nothing, while the counts still count, and
// that statements are not recorded by default.
func TestCounter_SetOrigins(t *testing.T) {
	var c sqlcount.Counter
	db := sql.OpenDB(sqlcount.NewConnector(sqliteConnector{dsn: sqliteDSN(t)}, &c))
	defer db.Close()
	st, err := db.Prepare("SELECT 1")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if got := c.Origins(); len(got) != 2 || got[0].Kind != sqlcount.Handles || got[1].Kind != sqlcount.Connections {
		t.Errorf("default origins: got %v, want a handle's and a connection's", got)
	}
	c.SetOrigins()
	db2 := sql.OpenDB(sqlcount.NewConnector(sqliteConnector{dsn: sqliteDSN(t)}, &c))
	defer db2.Close()
	if err := db2.Ping(); err != nil {
		t.Fatal(err)
	}
	if got, want := c.Counts().HandlesOpen(), uint64(2); got != want {
		t.Errorf("handles open: got %d, want %d", got, want)
	}
	if got, want := len(c.OpenObjects()), 2; got != want {
		t.Errorf("objects recorded with origins off: got %d, want %d (the first handle's)", got, want)
	}
}

// heldConn returns a connection of db that says it is bad when released,
// so that database/sql discards it and, for a request that waits, opens
// the next one in its background opener goroutine.
func badOnRelease(t *testing.T, c *sql.Conn) {
	t.Helper()
	if err := c.Raw(func(any) error { return driver.ErrBadConn }); err == nil {
		t.Fatal("Raw: got nil, want driver.ErrBadConn")
	}
}

// Ensure a connection that database/sql's connectionOpener goroutine opens
// has its handle's origin, not a stack of database/sql alone.
func TestCounter_OriginOfBackgroundConnection(t *testing.T) {
	var c sqlcount.Counter
	_, _, line, _ := runtime.Caller(0)
	db := sql.OpenDB(sqlcount.NewConnector(sqliteConnector{dsn: sqliteDSN(t)}, &c)) // line+1
	defer db.Close()
	db.SetMaxOpenConns(1)
	ctx := context.Background()
	held, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan *sql.Conn, 1)
	go func() {
		c, err := db.Conn(ctx) // waits for the held one
		if err != nil {
			t.Error(err)
		}
		got <- c
	}()
	for db.Stats().WaitCount == 0 {
		runtime.Gosched() // until the request waits
	}
	badOnRelease(t, held)
	second := <-got
	defer second.Close()
	objs := c.OpenObjects()
	if len(objs) != 2 {
		t.Fatalf("objects: got %d, want the handle and one connection", len(objs))
	}
	conn := objs[1]
	if !conn.Attributed {
		t.Errorf("connection: got Attributed false, want true (opened in the background)")
	}
	if s := conn.Site(); !strings.HasSuffix(s.Function, ".TestCounter_OriginOfBackgroundConnection") || s.Line != line+1 {
		t.Errorf("connection site: got %s:%d, want the handle's, at line %d", s.Function, s.Line, line+1)
	}
}

// Ensure SetProfiles(false) keeps the origins of the objects opened then
// out of the pprof profiles, and in OpenObjects; and that an object added
// while it was on is removed at its close after it was turned off.
func TestSetProfiles(t *testing.T) {
	defer sqlcount.SetProfiles(true)
	var c sqlcount.Counter
	dsn := sqliteDSN(t)
	h0, _ := profileCount(t, "sqlcount.handles")
	before := sql.OpenDB(sqlcount.NewConnector(sqliteConnector{dsn: dsn}, &c))
	sqlcount.SetProfiles(false)
	after := sql.OpenDB(sqlcount.NewConnector(sqliteConnector{dsn: dsn}, &c))
	if n, _ := profileCount(t, "sqlcount.handles"); n-h0 != 1 {
		t.Errorf("sqlcount.handles: got %d more, want 1 (the handle opened before SetProfiles(false))", n-h0)
	}
	if got := len(c.OpenObjects()); got != 2 {
		t.Errorf("OpenObjects: got %d, want 2", got)
	}
	before.Close()
	after.Close()
	if n, _ := profileCount(t, "sqlcount.handles"); n != h0 {
		t.Errorf("sqlcount.handles after Close: got %d, want %d", n, h0)
	}
}

// cgoCallbackHandles are the handles openInCallback opened, for the test to
// close.
var cgoCallbackHandles struct {
	sync.Mutex
	counter *sqlcount.Counter
	dsn     string
	dbs     []*sql.DB
}

var cgoCallbackRegister sync.Once

// openInCallback is a SQL function that SQLite calls back into Go: it opens
// a counted handle, so that its origin is taken with C frames on the stack.
func openInCallback() int64 {
	cgoCallbackHandles.Lock()
	defer cgoCallbackHandles.Unlock()
	d := sql.OpenDB(sqlcount.NewConnector(sqliteConnector{dsn: cgoCallbackHandles.dsn}, cgoCallbackHandles.counter))
	cgoCallbackHandles.dbs = append(cgoCallbackHandles.dbs, d)
	return 1
}

// Ensure a handle opened in a Go function that C code called (a SQLite
// function, through cgo) has its origin there, and that its stack goes on,
// through cgo, to the Go code that ran the query: runtime.Callers walks
// across the C frames as the runtime's own tracebacks do.
func TestCounter_OriginInCgoCallback(t *testing.T) {
	var c sqlcount.Counter
	cgoCallbackHandles.counter, cgoCallbackHandles.dsn = &c, sqliteDSN(t)
	defer func() {
		for _, d := range cgoCallbackHandles.dbs {
			d.Close()
		}
		cgoCallbackHandles.dbs = nil
	}()
	cgoCallbackRegister.Do(func() {
		sql.Register("sqlite3-origins-callback", &sqlite3.SQLiteDriver{ConnectHook: func(conn *sqlite3.SQLiteConn) error {
			return conn.RegisterFunc("open_in_callback", openInCallback, false)
		}})
	})
	db, err := sql.Open("sqlite3-origins-callback", sqliteDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var one int64
	if err := db.QueryRow("SELECT open_in_callback()").Scan(&one); err != nil {
		t.Fatal(err)
	}
	got := c.Origins()
	if len(got) != 1 || got[0].Kind != sqlcount.Handles || !strings.HasSuffix(got[0].Function, ".openInCallback") {
		t.Fatalf("origins: got %v, want one handle from sqlcount_test.openInCallback", got)
	}
	var funcs []string
	for _, f := range got[0].Stack {
		funcs = append(funcs, f.Function)
	}
	if !slices.ContainsFunc(funcs, func(f string) bool { return strings.HasSuffix(f, ".TestCounter_OriginInCgoCallback") }) {
		t.Errorf("stack: got %q, want it to reach the test that ran the query", funcs)
	}
}
