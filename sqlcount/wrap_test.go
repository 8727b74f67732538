package sqlcount

import (
	"bytes"
	"context"
	"database/sql/driver"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// fullConn implements every optional interface of driver.Conn.
type fullConn struct{}

func (fullConn) Prepare(string) (driver.Stmt, error)                { return fullStmt{}, nil }
func (fullConn) Close() error                                       { return nil }
func (fullConn) Begin() (driver.Tx, error)                          { return nil, driver.ErrSkip }
func (fullConn) Ping(context.Context) error                         { return nil }
func (fullConn) ResetSession(context.Context) error                 { return nil }
func (fullConn) IsValid() bool                                      { return true }
func (fullConn) CheckNamedValue(*driver.NamedValue) error           { return nil }
func (fullConn) Exec(string, []driver.Value) (driver.Result, error) { return nil, nil }
func (fullConn) Query(string, []driver.Value) (driver.Rows, error)  { return nil, nil }
func (fullConn) BeginTx(context.Context, driver.TxOptions) (driver.Tx, error) {
	return nil, driver.ErrSkip
}
func (fullConn) PrepareContext(context.Context, string) (driver.Stmt, error) {
	return fullStmt{}, nil
}
func (fullConn) ExecContext(context.Context, string, []driver.NamedValue) (driver.Result, error) {
	return nil, nil
}
func (fullConn) QueryContext(context.Context, string, []driver.NamedValue) (driver.Rows, error) {
	return nil, nil
}

// fullStmt implements every optional interface of driver.Stmt.
type fullStmt struct{}

func (fullStmt) Close() error                               { return nil }
func (fullStmt) NumInput() int                              { return -1 }
func (fullStmt) Exec([]driver.Value) (driver.Result, error) { return nil, nil }
func (fullStmt) Query([]driver.Value) (driver.Rows, error)  { return nil, nil }
func (fullStmt) CheckNamedValue(*driver.NamedValue) error   { return nil }
func (fullStmt) ColumnConverter(int) driver.ValueConverter  { return driver.DefaultParameterConverter }
func (fullStmt) ExecContext(context.Context, []driver.NamedValue) (driver.Result, error) {
	return nil, nil
}
func (fullStmt) QueryContext(context.Context, []driver.NamedValue) (driver.Rows, error) {
	return nil, nil
}

// Ensure every entry of the generated tables implements exactly the
// interfaces of its mask: the table is complete and in bit order.
func TestWrappers_EveryCombination(t *testing.T) {
	if got, want := len(connWrappers), 1<<len(connInterfaces); got != want {
		t.Fatalf("conn wrappers: got %v, want %v", got, want)
	}
	var c Counter
	for m, wrap := range connWrappers {
		w := wrap(&conn{base: fullConn{}, counter: &c})
		if got := connMask(w); got != m {
			t.Errorf("conn wrapper %d: got mask %b, want %b", m, got, m)
		}
	}
	if got, want := len(stmtWrappers), 1<<len(stmtInterfaces); got != want {
		t.Fatalf("stmt wrappers: got %v, want %v", got, want)
	}
	for m, wrap := range stmtWrappers {
		w := wrap(&stmt{base: fullStmt{}, counter: &c})
		if got := stmtMask(w); got != m {
			t.Errorf("stmt wrapper %d: got mask %b, want %b", m, got, m)
		}
	}
}

// Ensure the statement a wrapper's PrepareContext returns is counted and
// wrapped, whatever the combination.
func TestWrappers_PrepareContextCounts(t *testing.T) {
	var c Counter
	w := wrapConn(fullConn{}, &c, nil)
	s, err := w.(driver.ConnPrepareContext).PrepareContext(context.Background(), "SELECT 1")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := stmtMask(s), 1<<len(stmtInterfaces)-1; got != want {
		t.Errorf("statement mask: got %b, want %b", got, want)
	}
	if got, want := c.Counts().StatementsOpen(), uint64(1); got != want {
		t.Errorf("statements open: got %v, want %v", got, want)
	}
	s.Close()
	s.Close()
	w.Close()
	w.Close()
	if got, want := c.Counts(), (Counts{ConnectionsOpened: 1, ConnectionsClosed: 1, StatementsPrepared: 1, StatementsClosed: 1}); got != want {
		t.Errorf("counts after two closes each: got %+v, want %+v", got, want)
	}
}

// Ensure wrap_gen.go is what the generator writes now, so that the two
// cannot drift.
func TestGenerated(t *testing.T) {
	out := filepath.Join(t.TempDir(), "wrap_gen.go")
	cmd := exec.Command("go", "run", "./internal/gen", "-o", out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go run ./internal/gen: %v\n%s", err, b)
	}
	got, err := os.ReadFile("wrap_gen.go")
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("wrap_gen.go differs from what ./internal/gen writes: run go generate ./sqlcount")
	}
	if !bytes.HasPrefix(got, []byte("// Code generated ")) || !bytes.Contains(got[:80], []byte("DO NOT EDIT.")) {
		t.Errorf("wrap_gen.go: got a first line %q, want the Code generated ... DO NOT EDIT. header", bytes.SplitN(got, []byte("\n"), 2)[0])
	}
}

// BenchmarkWrapper_QueryContext measures what the wrapper adds to each call
// database/sql makes on a connection, against a driver that does nothing:
// the point-select benchmarks are too noisy on a shared machine to show it.
func BenchmarkWrapper_QueryContext(b *testing.B) {
	ctx := context.Background()
	for _, bc := range []struct {
		name string
		conn driver.Conn
	}{
		{"Raw", fullConn{}},
		{"Wrapped", wrapConn(fullConn{}, new(Counter), nil)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			q := bc.conn.(driver.QueryerContext)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := q.QueryContext(ctx, "SELECT 1", nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// fullConnector connects fullConns.
type fullConnector struct{}

func (fullConnector) Connect(context.Context) (driver.Conn, error) { return fullConn{}, nil }
func (fullConnector) Driver() driver.Driver                        { return nil }

// BenchmarkOrigins measures what recording origins adds to opening and
// closing a handle with one connection, on a driver that does nothing:
// the whole of the cost, with nothing of SQLite's to hide it. origins=off
// records nothing, on records for the Go API only (SetProfiles(false)),
// on+pprof into the pprof profiles too. The stack walks cost by the frame:
// depth=30 opens under 30 more frames, as a job run does.
func BenchmarkOrigins(b *testing.B) {
	defer SetProfiles(true)
	for _, depth := range []int{0, 30} {
		for _, mode := range []string{"off", "on", "on+pprof"} {
			b.Run(fmt.Sprintf("depth=%d/origins=%s", depth, mode), func(b *testing.B) {
				var c Counter
				if mode == "off" {
					c.SetOrigins()
				}
				SetProfiles(mode == "on+pprof")
				b.ReportAllocs()
				deep(depth, func() {
					for b.Loop() {
						h := NewConnector(fullConnector{}, &c)
						conn, err := h.Connect(context.Background())
						if err != nil {
							b.Fatal(err)
						}
						conn.Close()
						h.(io.Closer).Close()
					}
				})
			})
		}
	}
}

// deep calls f under depth more frames.
//
//go:noinline
func deep(depth int, f func()) {
	if depth == 0 {
		f()
		return
	}
	deep(depth-1, f)
}
