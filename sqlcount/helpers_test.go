package sqlcount_test

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sqlworker/worker/internal/drivertest"
	"github.com/sqlworker/worker/sqlcount"
)

// testOptionalInterfaces checks that the connection and the statement of
// wrapped implement exactly what those of base implement. Both connectors
// reach the same database.
func testOptionalInterfaces(t *testing.T, base, wrapped driver.Connector, query string, wantConn []string) {
	t.Helper()
	ctx := context.Background()
	bc, err := base.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer bc.Close()
	wc, err := wrapped.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer wc.Close()
	got, want := drivertest.Implemented(wc, drivertest.ConnInterfaces), drivertest.Implemented(bc, drivertest.ConnInterfaces)
	if !slices.Equal(got, want) {
		t.Errorf("connection: got %v, want %v", got, want)
	}
	// The list of the driver's own, so that a change of the driver is seen.
	if !slices.Equal(want, wantConn) {
		t.Errorf("base connection: got %v, want %v", want, wantConn)
	}
	if u, ok := wc.(interface{ Unwrap() driver.Conn }); !ok || reflect.TypeOf(u.Unwrap()) != reflect.TypeOf(bc) {
		t.Errorf("Unwrap: got %T, want a method that returns a %T", wc, bc)
	}

	prepare := func(c driver.Conn) driver.Stmt {
		t.Helper()
		var s driver.Stmt
		var err error
		if pc, ok := c.(driver.ConnPrepareContext); ok {
			s, err = pc.PrepareContext(ctx, query)
		} else {
			s, err = c.Prepare(query)
		}
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	bs, ws := prepare(bc), prepare(wc)
	defer bs.Close()
	defer ws.Close()
	if got, want := drivertest.Implemented(ws, drivertest.StmtInterfaces), drivertest.Implemented(bs, drivertest.StmtInterfaces); !slices.Equal(got, want) {
		t.Errorf("statement: got %v, want %v", got, want)
	}
}

// compareCounts compares the exposition of a Collector of c with want.
// Only the metrics named in names are compared, all when there is none.
func compareCounts(t *testing.T, c *sqlcount.Counter, want string, opts []sqlcount.Option, names ...string) {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(sqlcount.NewCollector(c, opts...))
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}
}

// perf408 is the PERF-408 pattern: an init that opens a new handle on every
// call and keeps it for ever in a global slice.
type perf408 struct {
	counter *sqlcount.Counter
	open    func() *sql.DB // a new handle counted into counter
	handles []*sql.DB
}

func (p *perf408) init(ctx context.Context) error {
	db := p.open()
	p.handles = append(p.handles, db) // never closed: the leak
	return db.PingContext(ctx)
}

// run calls init calls times and checks after each call that the handles
// and connections open rose by one; then check(i) checks what else should
// have. Then it closes the handles, as the fix would, and checks that no
// connection is left open.
func (p *perf408) run(t *testing.T, calls int, check func(i int)) {
	t.Helper()
	defer p.close()
	for i := 1; i <= calls; i++ {
		if err := p.init(context.Background()); err != nil {
			t.Fatal(err)
		}
		n := p.counter.Counts()
		if got, want := n.HandlesOpen(), uint64(i); got != want {
			t.Fatalf("call %d: handles open: got %v, want %v", i, got, want)
		}
		if got, want := n.ConnectionsOpen(), uint64(i); got != want {
			t.Fatalf("call %d: connections open: got %v, want %v", i, got, want)
		}
		if check != nil {
			check(i)
		}
	}
	p.close()
	if got, want := p.counter.Counts().ConnectionsOpen(), uint64(0); got != want {
		t.Errorf("connections open after the fix: got %v, want %v", got, want)
	}
}

func (p *perf408) close() {
	for _, db := range p.handles {
		db.Close()
	}
	p.handles = nil
}
