package sqlcount

import (
	"cmp"
	"fmt"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Kind is what a counted object is: a handle, a connection or a prepared
// statement.
type Kind uint8

// The kinds of counted objects.
const (
	Handles Kind = iota
	Connections
	Statements
	numKinds
)

// String returns the kind's name in the singular: "handle", "connection",
// "statement".
func (k Kind) String() string {
	switch k {
	case Handles:
		return "handle"
	case Connections:
		return "connection"
	case Statements:
		return "statement"
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// ProfileName returns the name of the runtime/pprof profile of the kind's
// open objects: "sqlcount.handles", "sqlcount.conns" or "sqlcount.stmts".
// net/http/pprof serves it at /debug/pprof/<name>.
func (k Kind) ProfileName() string {
	switch k {
	case Handles:
		return "sqlcount.handles"
	case Connections:
		return "sqlcount.conns"
	case Statements:
		return "sqlcount.stmts"
	}
	return ""
}

// DefaultOrigins are the kinds whose origins a Counter records unless
// SetOrigins says otherwise. Statements are left out: a statement is
// prepared far more often than a handle or a connection is opened, and the
// stack of every prepare is a cost of its own (docs/performance.md).
var DefaultOrigins = []Kind{Handles, Connections}

// kindMask returns the bits of kinds.
func kindMask(kinds []Kind) uint32 {
	var m uint32
	for _, k := range kinds {
		if k < numKinds {
			m |= 1 << k
		}
	}
	return m
}

// defaultMask is DefaultOrigins' bits. A Counter stores its mask XOR this,
// so that its zero value records the defaults.
var defaultMask = kindMask(DefaultOrigins)

// SetOrigins sets the kinds of object whose origins c records from now on:
// the program counters of the call that opened each one, kept while it is
// open, for Origins, OpenObjects and the runtime/pprof profiles (see
// Kind.ProfileName). SetOrigins() with no kind records none. Objects opened
// before the call keep what was recorded for them. The default is
// DefaultOrigins.
func (c *Counter) SetOrigins(kinds ...Kind) {
	c.originsOff.Store(kindMask(kinds) ^ defaultMask)
}

func (c *Counter) records(k Kind) bool {
	return (c.originsOff.Load()^defaultMask)&(1<<k) != 0
}

// maxDepth is how many frames an origin keeps, as runtime/pprof does.
const maxDepth = 32

// record is the origin of one open object: the key of its entry in the
// live set and in its kind's pprof profile, unique per open.
type record struct {
	kind    Kind
	counter *Counter
	id      uint64
	opened  time.Time
	// attributed: a connection that database/sql's background opener made,
	// given the origin of its handle.
	attributed bool
	profiled   bool // in its kind's pprof profile
	n          int
	pcs        [maxDepth]uintptr
}

// live is the set of open objects with a record, across all Counters: a
// test helper asks for those of the whole process, as goleak does for
// goroutines.
var live struct {
	mu     sync.Mutex
	m      map[*record]struct{}
	nextID uint64
}

var (
	profilesOnce sync.Once
	profiles     [numKinds]*pprof.Profile
)

// profile returns the pprof profile of k, registered on first use. A
// profile of the name registered before (by a copy of this package, say) is
// used as it is: NewProfile panics on a name taken.
func profile(k Kind) *pprof.Profile {
	profilesOnce.Do(func() {
		for k := range numKinds {
			name := k.ProfileName()
			if profiles[k] = pprof.Lookup(name); profiles[k] == nil {
				profiles[k] = pprof.NewProfile(name)
			}
		}
	})
	return profiles[k]
}

// init registers the profiles, so that /debug/pprof/ lists them before the
// first object is opened.
func init() { profile(Handles) }

// track records the origin of an object of kind k that its caller opens,
// when c records k, and returns nil otherwise. The stack starts at track's
// caller. The record goes into the live set and into k's pprof profile.
//
//go:noinline
func (c *Counter) track(k Kind) *record {
	if !c.records(k) {
		return nil
	}
	r := &record{kind: k, counter: c, opened: time.Now()}
	r.n = callers(r.pcs[:])
	c.add(r, 2)
	return r
}

// trackConn is track for a connection of the handle h (nil: none). A
// connection that database/sql's connectionOpener goroutine made has no
// stack of the program: its origin is its handle's.
//
//go:noinline
func (c *Counter) trackConn(h *record) *record {
	if !c.records(Connections) {
		return nil
	}
	r := &record{kind: Connections, counter: c, opened: time.Now()}
	r.n = callers(r.pcs[:])
	if h != nil && inOpener(r.pcs[:r.n]) {
		r.pcs, r.n, r.attributed = h.pcs, h.n, true
	}
	c.add(r, 2)
	return r
}

// add puts r into the live set and, while SetProfiles is on, into its
// kind's profile, with the stack of add's caller's caller (skip). pprof
// records the current goroutine's stack: for an attributed connection that
// is database/sql's opener; the Go API (Origins, OpenObjects) gives the
// handle's.
func (c *Counter) add(r *record, skip int) {
	live.mu.Lock()
	if live.m == nil {
		live.m = make(map[*record]struct{})
	}
	live.nextID++
	r.id = live.nextID
	live.m[r] = struct{}{}
	live.mu.Unlock()
	if !profilesOff.Load() {
		r.profiled = true
		profile(r.kind).Add(r, skip)
	}
}

// profilesOff is SetProfiles(false).
var profilesOff atomic.Bool

// SetProfiles sets whether the objects opened from now on whose origins are
// recorded also go into the runtime/pprof profiles (Kind.ProfileName); by
// default they do. pprof.Profile.Add walks the stack of the open once more,
// with the runtime's unwinder: in a job run, the most of what the origins
// cost (docs/performance.md). A program that serves no pprof can turn it
// off and keep the origins of Origins, OpenObjects and sqlcounttest; the
// worker does, unless --web.enable-pprof. The profiles stay registered, and
// hold what was opened while it was on until it is closed.
func SetProfiles(on bool) { profilesOff.Store(!on) }

// forget drops r, the record of an object now closed; r may be nil.
func forget(r *record) {
	if r == nil {
		return
	}
	live.mu.Lock()
	_, ok := live.m[r]
	delete(live.m, r)
	live.mu.Unlock()
	if ok && r.profiled {
		profile(r.kind).Remove(r)
	}
}

// openerFunc is the function of database/sql's goroutine that opens
// connections in the background, for requests that wait.
const openerFunc = "database/sql.(*DB).connectionOpener"

// inOpener reports whether pcs is a stack of database/sql's opener
// goroutine: the goroutine's own function is among the last three frames,
// before the go statement's wrapper and goexit.
func inOpener(pcs []uintptr) bool {
	return slices.ContainsFunc(pcs[max(len(pcs)-3, 0):], isOpenerPC)
}

// openerPCs caches, by program counter, whether the frame is database/sql's
// opener: symbolising it costs more than the rest of a record.
var openerPCs sync.Map // uintptr -> bool

func isOpenerPC(pc uintptr) bool {
	if v, ok := openerPCs.Load(pc); ok {
		return v.(bool)
	}
	is := false
	frames := runtime.CallersFrames([]uintptr{pc})
	for {
		f, more := frames.Next()
		is = is || f.Function == openerFunc
		if !more {
			break
		}
	}
	openerPCs.Store(pc, is)
	return is
}

// Object is an open handle, connection or statement whose origin was
// recorded.
type Object struct {
	Kind   Kind
	ID     uint64    // unique in the process, increasing in the order of opening
	Opened time.Time // when it was opened
	// Attributed is true for a connection that database/sql's background
	// opener made: its stack is its handle's.
	Attributed bool

	pcs []uintptr
}

// Stack returns the frames of the call that opened o, innermost first,
// from sqlcount's own frame down.
func (o Object) Stack() []runtime.Frame {
	var out []runtime.Frame
	frames := runtime.CallersFrames(o.pcs)
	for {
		f, more := frames.Next()
		out = append(out, f)
		if !more {
			return out
		}
	}
}

// Site returns the frame that opened o: the first of its stack outside
// database/sql, the drivers (go-sqlite3, pgx), sqlcount and the runtime.
// When every frame is in those, it is the outermost frame but the runtime's.
func (o Object) Site() runtime.Frame {
	var last runtime.Frame
	for _, f := range o.Stack() {
		if !internalFrame(f) {
			return f
		}
		if !strings.HasPrefix(f.Function, "runtime.") {
			last = f
		}
	}
	return last
}

// internalPrefixes are the packages whose frames are not an origin:
// database/sql, the drivers sqlcount is used with, and sqlcount itself.
var internalPrefixes = []string{
	"database/sql.",
	"database/sql/driver.",
	"github.com/mattn/go-sqlite3.",
	"github.com/jackc/pgx/",
	"github.com/sqlworker/worker/sqlcount.",
	"runtime.",
}

// internalFrame reports whether f is in internalPrefixes. sqlcount's own
// tests are not: they are programs that open handles.
func internalFrame(f runtime.Frame) bool {
	for _, p := range internalPrefixes {
		if strings.HasPrefix(f.Function, p) {
			return !strings.HasSuffix(f.File, "_test.go")
		}
	}
	return false
}

// OpenObjects returns the open objects whose origins were recorded, of
// every Counter of the process, in the order they were opened.
func OpenObjects() []Object { return openObjects(nil) }

// OpenObjects returns the open objects counted into c whose origins were
// recorded, in the order they were opened.
func (c *Counter) OpenObjects() []Object { return openObjects(c) }

func openObjects(c *Counter) []Object {
	live.mu.Lock()
	out := make([]Object, 0, len(live.m))
	for r := range live.m {
		if c == nil || r.counter == c {
			out = append(out, Object{Kind: r.kind, ID: r.id, Opened: r.opened, Attributed: r.attributed, pcs: r.pcs[:r.n]})
		}
	}
	live.mu.Unlock()
	slices.SortFunc(out, func(a, b Object) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// Origin is a call site that opened objects still open: their kind, the
// site (Object.Site), how many and when the oldest was opened.
type Origin struct {
	Kind     Kind
	Function string // package path and function, as runtime.Frame has it
	File     string
	Line     int
	Count    int
	Oldest   time.Time
	Stack    []runtime.Frame // the oldest object's
}

// String returns the origin on one line: "3 handles open from
// main.initDb (/src/main.go:12), the oldest for 1m2s".
func (o Origin) String() string {
	kind := o.Kind.String()
	if o.Count != 1 {
		kind += "s"
	}
	return fmt.Sprintf("%d %s open from %s (%s:%d), the oldest for %s",
		o.Count, kind, o.Function, o.File, o.Line, time.Since(o.Oldest).Round(time.Millisecond))
}

// Origins returns the open objects counted into c whose origins were
// recorded, grouped by kind and site: the most first, then by kind.
func (c *Counter) Origins() []Origin { return Group(c.OpenObjects()) }

// Group groups objs by kind and site (Object.Site), the groups with the
// most objects first, then by kind, then by function.
func Group(objs []Object) []Origin {
	type key struct {
		kind Kind
		fn   string
		file string
		line int
	}
	idx := make(map[key]int)
	var out []Origin
	for _, o := range objs {
		s := o.Site()
		k := key{o.Kind, s.Function, s.File, s.Line}
		i, ok := idx[k]
		if !ok {
			i = len(out)
			idx[k] = i
			out = append(out, Origin{Kind: o.Kind, Function: s.Function, File: s.File, Line: s.Line, Oldest: o.Opened, Stack: o.Stack()})
		}
		out[i].Count++
		if o.Opened.Before(out[i].Oldest) {
			out[i].Oldest, out[i].Stack = o.Opened, o.Stack()
		}
	}
	slices.SortStableFunc(out, func(a, b Origin) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Function, b.Function))
	})
	return out
}

// openedCounts are the objects of each kind opened in the process, with or
// without a record, for helpers that count what a call opened.
var openedCounts [numKinds]atomic.Uint64

// Opened returns how many objects of kind k were opened through sqlcount
// in the process, by every Counter, since it started.
func Opened(k Kind) uint64 {
	if k >= numKinds {
		return 0
	}
	return openedCounts[k].Load()
}
