// Package sqlcounttest fails a test that leaves database handles,
// connections or prepared statements open, as go.uber.org/goleak does for
// goroutines, and names the call site that opened each one: PERF-408's
// preventive measures ("close what you open", "initialise once") as
// checks.
//
// It sees what package sqlcount counts with origins: handles and
// connections of every sqlcount wrapper in the process by default, and
// prepared statements of a Counter with SetOrigins(..., sqlcount.Statements).
// A handle opened on a driver that no sqlcount wrapper wraps is not seen.
//
//	func TestOrders(t *testing.T) {
//		defer sqlcounttest.VerifyNone(t, sqlcounttest.IgnoreCurrent())
//		...
//	}
//
// VerifyIdempotent checks that an init function, called N times, opens at
// most one handle.
//
// The API is v0: it may change until 1.0.
package sqlcounttest

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/sqlworker/worker/sqlcount"
)

// TestingT is the part of testing.TB that the Verify functions use.
type TestingT interface {
	Error(args ...any)
}

// Option changes what Find and VerifyNone look for.
type Option func(*options)

type options struct {
	ignore  map[uint64]bool
	funcs   []string
	maxWait time.Duration
}

// IgnoreCurrent ignores the objects open at the time of the call: pass it
// where the test starts (defer VerifyNone(t, IgnoreCurrent()) evaluates it
// then) to check only what the test opened.
func IgnoreCurrent() Option {
	ids := make(map[uint64]bool)
	for _, o := range sqlcount.OpenObjects() {
		ids[o.ID] = true
	}
	return func(o *options) {
		for id := range ids {
			o.ignore[id] = true
		}
	}
}

// IgnoreOrigin ignores the objects whose site (sqlcount.Object.Site) is in
// the function named, with its package path as runtime.Frame has it
// ("example.com/app/db.Open"): a handle meant to live for the whole
// program, say.
func IgnoreOrigin(function string) Option {
	return func(o *options) { o.funcs = append(o.funcs, function) }
}

// MaxWait sets how long Find waits for objects to close before it reports
// them; the default is one second. database/sql closes some of them in
// goroutines of its own (the rows of a cancelled query), a little after the
// test is done with them.
func MaxWait(d time.Duration) Option {
	return func(o *options) { o.maxWait = d }
}

func build(opts []Option) *options {
	o := &options{ignore: make(map[uint64]bool), maxWait: time.Second}
	for _, opt := range opts {
		opt(o)
	}
	return o
}

// Error is the error of Find and FindRepeated: the leaked objects grouped
// by the site that opened them, the most first.
type Error struct {
	// Summary says what was found, for FindRepeated how many handles the
	// calls opened.
	Summary string
	Origins []sqlcount.Origin
}

// Error lists each origin with its count, its site (function and
// file:line) and the stack of its oldest object.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("sqlcounttest: " + e.Summary)
	for _, o := range e.Origins {
		fmt.Fprintf(&b, "\n%s\n", o)
		for _, f := range o.Stack {
			fmt.Fprintf(&b, "\t%s\n\t\t%s:%d\n", f.Function, f.File, f.Line)
		}
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// leaked returns the open objects that o does not ignore.
func (o *options) leaked() []sqlcount.Object {
	var out []sqlcount.Object
	for _, obj := range sqlcount.OpenObjects() {
		if o.ignore[obj.ID] || o.ignoredSite(obj) {
			continue
		}
		out = append(out, obj)
	}
	return out
}

func (o *options) ignoredSite(obj sqlcount.Object) bool {
	if len(o.funcs) == 0 {
		return false
	}
	fn := obj.Site().Function
	for _, f := range o.funcs {
		if f == fn {
			return true
		}
	}
	return false
}

// Find returns an *Error naming every open handle, connection and statement
// that the options do not ignore, grouped by the site that opened it, or
// nil when there is none. It retries, with a growing pause, for up to
// MaxWait while there are some.
func Find(opts ...Option) error {
	o := build(opts)
	deadline := time.Now().Add(o.maxWait)
	pause := time.Millisecond
	for {
		objs := o.leaked()
		if len(objs) == 0 {
			return nil
		}
		if time.Now().Add(pause).After(deadline) {
			return &Error{Summary: fmt.Sprintf("found %d unexpected open %s", len(objs), plural(len(objs), "object")), Origins: sqlcount.Group(objs)}
		}
		time.Sleep(pause)
		pause = min(2*pause, 100*time.Millisecond)
	}
}

// VerifyNone fails t when Find finds open objects, with Find's error, which
// names the site of each.
func VerifyNone(t TestingT, opts ...Option) {
	if h, ok := t.(interface{ Helper() }); ok {
		h.Helper()
	}
	if err := Find(opts...); err != nil {
		t.Error(err)
	}
}

// TestingM is the part of *testing.M that VerifyTestMain uses.
type TestingM interface {
	Run() int
}

// VerifyTestMain runs the tests of m and then Find, and exits: 1 when the
// tests passed but left objects open, with Find's error on stderr. Call it
// from TestMain.
func VerifyTestMain(m TestingM, opts ...Option) {
	code := m.Run()
	if code == 0 {
		if err := Find(opts...); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	os.Exit(code)
}

// FindRepeated calls init n times and returns an *Error when the calls
// opened more than one handle in all, or nil when they opened at most one:
// an init that opens the database must open it once and return the same
// handle after (sync.Once), not open one per call (PERF-408). The error
// counts the handles the calls opened and names the sites of those still
// open. It returns init's first error, if any, without calling it again.
// The handles are counted process-wide: run it where no other code opens
// handles meanwhile.
func FindRepeated(n int, init func() error) error {
	before := sqlcount.Opened(sqlcount.Handles)
	current := build([]Option{IgnoreCurrent()})
	for i := range n {
		if err := init(); err != nil {
			return fmt.Errorf("sqlcounttest: call %d of %d: %w", i+1, n, err)
		}
	}
	opened := sqlcount.Opened(sqlcount.Handles) - before
	if opened <= 1 {
		return nil
	}
	var handles []sqlcount.Object
	for _, o := range current.leaked() {
		if o.Kind == sqlcount.Handles {
			handles = append(handles, o)
		}
	}
	return &Error{
		Summary: fmt.Sprintf("%d %s opened %d handles, want at most 1 (%d still open)", n, plural(n, "call"), opened, len(handles)),
		Origins: sqlcount.Group(handles),
	}
}

// VerifyIdempotent fails t when FindRepeated(n, init) returns an error.
func VerifyIdempotent(t TestingT, n int, init func() error) {
	if h, ok := t.(interface{ Helper() }); ok {
		h.Helper()
	}
	if err := FindRepeated(n, init); err != nil {
		t.Error(err)
	}
}

// plural returns word, with an s unless n is 1.
func plural(n int, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}
