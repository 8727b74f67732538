package origin

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/pprof"
	"os"
	"path/filepath"
	"runtime"
	rpprof "runtime/pprof"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/pprof/profile"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// objects is a profile of live objects, as sqlcount's are; conns stands
// for sqlcount's profile of connections, which this test serves itself.
var (
	objects = rpprof.NewProfile("origin_test.objects")
	conns   = rpprof.NewProfile(Conns)
)

type object struct{ _ byte }

// openHere opens n objects, recording this function as their origin.
func openHere(n int) []*object {
	out := make([]*object, n)
	for i := range out {
		out[i] = &object{}
		objects.Add(out[i], 1)
	}
	return out
}

// openThere opens n objects from a second site.
func openThere(n int) []*object { return openHere2(n) }

func openHere2(n int) []*object {
	out := make([]*object, n)
	for i := range out {
		out[i] = &object{}
		objects.Add(out[i], 1)
	}
	return out
}

func snapshotOf(t *testing.T, p *rpprof.Profile) *profile.Profile {
	t.Helper()
	var b bytes.Buffer
	if err := p.WriteTo(&b, 0); err != nil {
		t.Fatal(err)
	}
	pp, err := profile.Parse(&b)
	if err != nil {
		t.Fatal(err)
	}
	return pp
}

// Ensure Diff ranks the sites by what they added between two snapshots of
// a profile of live objects, names each by function, file and line, and
// counts what each holds at the end.
func TestDiff(t *testing.T) {
	a := openHere(2)
	b := openThere(5)
	base := snapshotOf(t, objects)
	a = append(a, openHere(7)...)
	for _, o := range b[:3] {
		objects.Remove(o)
	}
	end := snapshotOf(t, objects)
	t.Cleanup(func() {
		for _, o := range append(a, b[3:]...) {
			objects.Remove(o)
		}
	})

	sites, err := Diff(base, end, "origin_test.objects")
	if err != nil {
		t.Fatal(err)
	}
	if len(sites) != 2 {
		t.Fatalf("got %d sites (%+v), want 2", len(sites), sites)
	}
	got := fmt.Sprintf("%s %g %g; %s %g %g", shortFunc(sites[0].Function), sites[0].Growth, sites[0].Open,
		shortFunc(sites[1].Function), sites[1].Growth, sites[1].Open)
	if want := "origin.openHere 7 9; origin.openHere2 -3 2"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if s := sites[0]; filepath.Base(s.File) != "origin_test.go" || s.Line == 0 {
		t.Errorf("site %s:%d, want a line of origin_test.go", s.File, s.Line)
	}
	if c := sites[1].Callers; len(c) == 0 || !strings.HasPrefix(c[0], "github.com/sqlworker/worker/soak/internal/origin.openThere ") {
		t.Errorf("callers of openHere2 %q, want openThere first", c)
	}
	if w := sites[0].Where(); !strings.HasPrefix(w, "origin.openHere (origin/origin_test.go:") {
		t.Errorf("Where() = %q, want origin.openHere (origin/origin_test.go:N)", w)
	}
}

// Ensure frames of the standard library, the SQL drivers and sqlcount are
// passed over, and the program's are not.
func TestInfrastructure(t *testing.T) {
	for fn, want := range map[string]bool{
		"runtime.gopark":                                             true,
		"database/sql.(*DB).connectionOpener":                        true,
		"database/sql/driver.callValuerValue":                        true,
		"net/http.(*conn).serve":                                     true,
		"github.com/mattn/go-sqlite3.(*SQLiteDriver).Open":           true,
		"github.com/jackc/pgx/v5/stdlib.(*Conn).Close":               true,
		"github.com/sqlworker/worker/sqlcount.(*connector).Connect":  true,
		"github.com/sqlworker/worker/internal/db.(*Handle).leakOpen": false,
		"github.com/sqlworker/worker/internal/leak.AfterInit.func1":  false,
		"github.com/sqlworker/worker/sqlcountish.F":                  false,
		"main.initDb":                    false,
		"example.com/app.(*T).run.func2": false,
	} {
		if got := infrastructure(fn); got != want {
			t.Errorf("infrastructure(%q) = %v, want %v", fn, got, want)
		}
	}
}

// Ensure every default watched series either maps to a profile or says why
// none is given, and file descriptors say that they follow connections.
func TestSourceOf(t *testing.T) {
	for _, c := range []struct {
		name, fdType, profile string
		direct                bool
	}{
		{"worker_db_handles_open", "", Handles, true},
		{"worker_db_process_handles_open", "", Handles, false},
		{"worker_db_connections_open", "", Conns, true},
		{"go_sql_open_connections", "", Conns, true},
		{"go_sql_in_use_connections", "", Conns, false},
		{"worker_db_statements_open", "", Stmts, true},
		{"go_goroutines", "", Goroutine, true},
		{"go_memstats_heap_inuse_bytes", "", Heap, false},
		{"process_resident_memory_bytes", "", Heap, false},
		{"process_open_fds", "", Conns, false},
		{"worker_open_fds", "sqlite", Conns, false},
		{"worker_open_fds", "file", "", false},
		{"soak_server_backends", "", "", false},
		{"http_requests_in_flight", "", "", false},
	} {
		src, ok := SourceOf(c.name, map[string]string{"type": c.fdType})
		if src.Profile != c.profile || ok != (c.profile != "") || src.Direct != c.direct {
			t.Errorf("%s{type=%q}: got %+v %v, want profile %q direct %v", c.name, c.fdType, src, ok, c.profile, c.direct)
		}
		if !c.direct && src.Note == "" {
			t.Errorf("%s{type=%q}: no note, want one saying how the profile relates or why there is none", c.name, c.fdType)
		}
	}
}

// leakGoroutines starts n goroutines that wait until release is closed.
func leakGoroutines(n int, release chan struct{}, wg *sync.WaitGroup) {
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-release
		}()
	}
}

func pprofServer(t *testing.T) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL + "/debug/pprof/"
}

// Ensure a Tracker takes the profiles of a real net/http/pprof at the
// start, after warm-up and at the end, finds the goroutines started in
// between at the function that started them, says that sqlcount's
// profiles are not served, and saves the raw profiles for go tool pprof.
func TestTracker(t *testing.T) {
	release := make(chan struct{})
	var wg sync.WaitGroup
	t.Cleanup(func() { close(release); wg.Wait() })
	leakGoroutines(3, release, &wg) // during warm-up: not counted

	tr := New([]Target{{URL: pprofServer(t)}})
	tr.MinSpan = 0
	defer tr.Close()
	ctx := context.Background()
	if err := tr.Start(ctx, 0); err != nil {
		t.Fatal(err)
	}
	leakGoroutines(2, release, &wg)
	tr.Warm(ctx, 15)
	tr.wg.Wait()
	leakGoroutines(11, release, &wg)
	waitGoroutines(t, 11+2+3)
	held := []*object{{}, {}, {}, {}}
	for _, c := range held {
		conns.Add(c, 0)
	}
	t.Cleanup(func() {
		for _, c := range held {
			conns.Remove(c)
		}
	})
	tr.End(ctx, 75)

	fs := tr.Find([]Series{
		{Key: "go_goroutines", Name: "go_goroutines", T: []float64{0, 15, 30, 75}, V: []float64{20, 22, 30, 41}},
		{Key: "worker_db_handles_open", Name: "worker_db_handles_open"},
		{Key: `go_goroutines{x="y"}`, Name: "go_goroutines", T: []float64{15, 75}, V: []float64{0, 100}},
	})
	g := fs[0]
	top, ok := g.Top()
	if !ok || shortFunc(top.Function) != "origin.leakGoroutines.func1" || top.Growth != 11 || g.Base != PhaseWarmup || g.Measure != "growth" {
		t.Errorf("goroutines: top %+v (%v), base %q, measure %q; want leakGoroutines.func1 +11 since warm-up", top, ok, g.Base, g.Measure)
	}
	if g.SeriesGrowth != 19 || !g.Explains {
		t.Errorf("goroutines: series growth %g, explains %v; want 19 (22 at warm-up to 41), explained", g.SeriesGrowth, g.Explains)
	}
	if big := fs[2]; big.Explains || !strings.Contains(big.Note, "account for") {
		t.Errorf("a series that grew by 100: explains %v (%s), want not explained by +11 goroutines", big.Explains, big.Note)
	}
	ts, vs := []float64{0, 75}, []float64{0, 4}
	byConns := tr.Find([]Series{
		{Key: "worker_db_connections_open", Name: "worker_db_connections_open", T: ts, V: vs},
		{Key: "go_sql_in_use_connections", Name: "go_sql_in_use_connections", T: ts, V: vs},
	})
	if open, inUse := byConns[0], byConns[1]; !open.Explains || len(inUse.Sites) == 0 || inUse.Explains || !strings.Contains(inUse.Note, "not named in the verdict") {
		t.Errorf("connections open: explains %v; in use: %d sites, explains %v (%s); want the open ones named, the sites of the ones in use listed, never named: who holds a connection is not recorded",
			open.Explains, len(inUse.Sites), inUse.Explains, inUse.Note)
	}
	if got, want := g.Amount(top), "+11"; got != want {
		t.Errorf("Amount = %q, want %q", got, want)
	}
	if h := fs[1]; len(h.Sites) != 0 || !strings.Contains(h.Note, "serves no sqlcount.handles profile (") || !strings.Contains(h.Note, "404 Not Found") {
		t.Errorf("handles: %+v, want no site and a note that sqlcount.handles is not served (404)", h)
	}
	dir := t.TempDir()
	if err := tr.Save(dir); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{g.BaseFile, g.EndFile, "profiles/heap.end.pb.gz"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := profile.ParseData(b); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// waitGoroutines waits until the goroutines started by leakGoroutines are
// parked: until the profile shows at least n of them.
func waitGoroutines(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		p := snapshotOf(t, rpprof.Lookup("goroutine"))
		var got int64
		for _, s := range p.Sample {
			fs := frames(s)
			if i := siteOf(fs); i >= 0 && strings.HasSuffix(fs[i].fn, "leakGoroutines.func1") {
				got += s.Value[0]
			}
		}
		if got >= int64(n) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines parked after 10 s, want %d", got, n)
		}
		runtime.Gosched()
	}
}

// Ensure a target without net/http/pprof (a 404, or a page that is not a
// profile) gives an error saying why no origin is given.
func TestTracker_NoPprof(t *testing.T) {
	for name, h := range map[string]http.HandlerFunc{
		"NotFound": http.NotFound,
		"NotAProfile": func(w http.ResponseWriter, _ *http.Request) {
			fmt.Fprint(w, "<html>hello</html>")
		},
	} {
		t.Run(name, func(t *testing.T) {
			srv := httptest.NewServer(h)
			defer srv.Close()
			tr := New([]Target{{URL: srv.URL + "/debug/pprof/"}})
			defer tr.Close()
			err := tr.Start(context.Background(), 0)
			if !errors.Is(err, ErrNoPprof) || !strings.Contains(err.Error(), srv.URL+"/debug/pprof/goroutine") {
				t.Errorf("got %v, want ErrNoPprof naming the goroutine profile's URL", err)
			}
		})
	}
}

// Ensure a soak stopped right after its base profiles waits MinSpan before
// its end ones, so that a leak grows at its site, and says so in EndAt.
func TestTracker_MinSpan(t *testing.T) {
	tr := New([]Target{{URL: pprofServer(t)}})
	tr.MinSpan = 300 * time.Millisecond
	defer tr.Close()
	ctx := context.Background()
	if err := tr.Start(ctx, 0); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	tr.End(ctx, 0.01)
	if waited := time.Since(start); waited < 250*time.Millisecond {
		t.Errorf("End took %s, want at least MinSpan after the base", waited)
	}
	f := tr.Find([]Series{{Key: "go_goroutines", Name: "go_goroutines"}})[0]
	if f.EndAt < 0.25 || f.Base != PhaseStart {
		t.Errorf("end at %gs from %q, want ≥ 0.25 s after the start's base", f.EndAt, f.Base)
	}
}
