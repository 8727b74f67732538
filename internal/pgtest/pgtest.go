// Package pgtest runs throwaway PostgreSQL servers of the machine's
// postgresql package, for tests and for the soak harness: initdb in a new
// temporary directory, the server there, listening on a unix socket in that
// directory only, with fsync off, and the directory deleted when done.
//
// For a test, Start and New tie the server to a testing.TB: it is stopped
// and its files removed in tb.Cleanup. Outside go test (the soak harness),
// InitCluster returns a Cluster, started, stopped and removed by its
// methods, which return errors.
//
// A new server copies a cluster that initdb made once (see template) rather
// than running initdb for each one.
//
// As root, the server runs as the postgres user (initdb refuses root), with
// runuser, in a directory chowned to that user; as another user, as that
// user. When the binaries are missing a test fails, as root or with
// CI=true, and is skipped, with a message, only as another user outside CI.
package pgtest

import (
	"context"
	"errors"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"
)

// Start runs a new PostgreSQL server for tb and returns a DSN for it, in
// the key=value form that pgx and libpq take. The server is stopped and its
// files are removed in tb.Cleanup.
func Start(tb testing.TB) string {
	tb.Helper()
	s := New(tb)
	s.Start(tb)
	return s.DSN()
}

// Server is a server's data directory that a test starts and stops, for
// tests of a server that is down, or comes up late.
type Server struct {
	srv      *Cluster
	settings []string // name=value of Set
}

// New runs initdb for a server for tb and returns it, not running. Its
// files are removed, and it is stopped when running, in tb.Cleanup.
func New(tb testing.TB) *Server {
	tb.Helper()
	srv, err := InitCluster()
	if errors.Is(err, ErrUnavailable) {
		unavailable(tb, err)
	}
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := srv.Remove(); err != nil {
			tb.Errorf("%v", err)
		}
	})
	return &Server{srv: srv}
}

// Set sets a server setting, such as max_connections, for the next Start
// (as -c name=value).
func (s *Server) Set(name, value string) {
	s.settings = append(s.settings, name+"="+value)
}

// Start starts the server and waits until it accepts connections.
func (s *Server) Start(tb testing.TB) {
	tb.Helper()
	if err := s.srv.Start(s.settings...); err != nil {
		tb.Fatal(err)
	}
}

// Restart restarts the running server as an operator would, with
// `pg_ctl restart` (fast mode: the backends are terminated, "terminating
// connection due to administrator command"), and waits until it accepts
// connections again.
func (s *Server) Restart(tb testing.TB) {
	tb.Helper()
	if err := s.srv.Restart(); err != nil {
		tb.Fatal(err)
	}
}

// Stop stops the server at once (pg_ctl -m immediate).
func (s *Server) Stop(tb testing.TB) {
	tb.Helper()
	if err := s.srv.Stop(); err != nil {
		tb.Error(err)
	}
}

// DSN returns the server's DSN, in the key=value form.
func (s *Server) DSN() string { return s.srv.DSN() }

// Connect returns a new connection of the test's own to the server, as
// User, its superuser (to run pg_terminate_backend, or hold connection
// slots), closed at cleanup. It fails tb when the server refuses it; use
// pgx.Connect with DSN to see the refusal.
func (s *Server) Connect(tb testing.TB) *pgx.Conn {
	tb.Helper()
	c, err := pgx.Connect(context.Background(), s.DSN())
	if err != nil {
		tb.Fatalf("cannot connect to the server: %v", err)
	}
	tb.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

// URL returns the server's postgres:// URL, with the socket directory in
// the host parameter.
func (s *Server) URL() string { return s.srv.URL() }

// unavailable fails tb, on CI and as root (who can install the package),
// and skips it otherwise.
func unavailable(tb testing.TB, err error) {
	tb.Helper()
	if os.Getenv("CI") == "true" || os.Getuid() == 0 {
		tb.Fatalf("PostgreSQL is needed (apt-get install postgresql): %v", err)
	}
	tb.Skipf("PostgreSQL is not available (apt-get install postgresql; as root or with CI=true this is a failure): %v", err)
}
