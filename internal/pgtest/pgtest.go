// Package pgtest runs a throwaway PostgreSQL server for tests: Start runs
// initdb and the server of the machine's postgresql package in a temporary
// directory, listening on a unix socket there only, with fsync off, and
// stops it and removes the directory when the test ends.
//
// As root, the server runs as the postgres user (initdb refuses root), with
// runuser; as another user, as that user. When the binaries are missing the
// test fails, as root or with CI=true, and is skipped, with a message, only
// as another user outside CI.
package pgtest

import (
	"bytes"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"testing"
	"time"
)

// User is the superuser of the servers Start runs, and Database the
// database that the DSN names.
const (
	User     = "postgres"
	Database = "postgres"
)

// StartTimeout bounds the wait for the server to accept connections.
const StartTimeout = 60 * time.Second

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
	dir, data, bin, runAs string
	running               bool
}

// New runs initdb for a server for tb and returns it, not running. Its
// files are removed, and it is stopped when running, in tb.Cleanup.
func New(tb testing.TB) *Server {
	tb.Helper()
	bin, err := binDir()
	if err != nil {
		unavailable(tb, err)
	}
	runAs, uid, gid, err := account()
	if err != nil {
		unavailable(tb, err)
	}
	// Not tb.TempDir: it is 0700 and owned by root, which the postgres user
	// cannot enter. The socket path must stay under 107 bytes: /tmp is short.
	dir, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		tb.Fatalf("cannot create the server's directory: %v", err)
	}
	tb.Cleanup(func() { _ = os.RemoveAll(dir) })
	if uid >= 0 {
		if err := os.Chown(dir, uid, gid); err != nil {
			tb.Fatalf("cannot give %s to the postgres user: %v", dir, err)
		}
	}
	s := &Server{dir: dir, data: filepath.Join(dir, "data"), bin: bin, runAs: runAs}
	if err := s.run("initdb", "-D", s.data, "-U", User, "-A", "trust", "-E", "UTF8", "--no-sync", "--no-instructions"); err != nil {
		tb.Fatalf("cannot initialise the server: %v", err)
	}
	tb.Cleanup(func() {
		if s.running {
			s.Stop(tb)
		}
	})
	return s
}

func (s *Server) run(name string, args ...string) error {
	cmd := exec.Command(filepath.Join(s.bin, name), args...)
	if s.runAs != "" {
		cmd = exec.Command("runuser", append([]string{"-u", s.runAs, "--", filepath.Join(s.bin, name)}, args...)...)
	}
	cmd.Dir = s.dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w\n%s", name, err, out.Bytes())
	}
	return nil
}

// Start starts the server and waits until it accepts connections.
func (s *Server) Start(tb testing.TB) {
	tb.Helper()
	opts := "-c listen_addresses='' -c unix_socket_directories=" + s.dir +
		" -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
	logFile := filepath.Join(s.dir, "server.log")
	if err := s.run("pg_ctl", "-D", s.data, "-l", logFile, "-o", opts, "-w", "-t", strconv.Itoa(int(StartTimeout.Seconds())), "start"); err != nil {
		log, _ := os.ReadFile(logFile)
		tb.Fatalf("cannot start the server: %v\n%s", err, log)
	}
	s.running = true
}

// Stop stops the server at once (pg_ctl -m immediate).
func (s *Server) Stop(tb testing.TB) {
	tb.Helper()
	if err := s.run("pg_ctl", "-D", s.data, "-m", "immediate", "-w", "stop"); err != nil {
		tb.Errorf("cannot stop the server: %v", err)
		return
	}
	s.running = false
}

// DSN returns the server's DSN, in the key=value form.
func (s *Server) DSN() string {
	return fmt.Sprintf("host=%s port=5432 user=%s dbname=%s sslmode=disable", s.dir, User, Database)
}

// URL returns the server's postgres:// URL, with the socket directory in
// the host parameter.
func (s *Server) URL() string {
	return "postgres://" + User + "@/" + Database + "?host=" + url.QueryEscape(s.dir) + "&sslmode=disable"
}

// unavailable fails tb, on CI and as root (who can install the package),
// and skips it otherwise.
func unavailable(tb testing.TB, err error) {
	tb.Helper()
	if os.Getenv("CI") == "true" || os.Getuid() == 0 {
		tb.Fatalf("PostgreSQL is needed (apt-get install postgresql): %v", err)
	}
	tb.Skipf("PostgreSQL is not available (apt-get install postgresql; as root or with CI=true this is a failure): %v", err)
}

// binDir returns the directory of initdb and pg_ctl: pg_config's, or the
// newest /usr/lib/postgresql/<version>/bin.
func binDir() (string, error) {
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		dir := string(bytes.TrimSpace(out))
		if _, err := os.Stat(filepath.Join(dir, "initdb")); err == nil {
			return dir, nil
		}
	}
	found, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(found) == 0 {
		return "", fmt.Errorf("no initdb in /usr/lib/postgresql/*/bin or from pg_config")
	}
	sort.Slice(found, func(i, j int) bool { return version(found[i]) < version(found[j]) })
	return filepath.Dir(found[len(found)-1]), nil
}

func version(initdb string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(initdb))))
	return v
}

// account returns the user to run the server as, with its ids: the postgres
// user when running as root, else nobody but the current user (runAs "",
// uid -1).
func account() (runAs string, uid, gid int, err error) {
	if os.Getuid() != 0 {
		return "", -1, -1, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return "", 0, 0, fmt.Errorf("running as root needs the postgres user: %w", err)
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	return u.Username, uid, gid, nil
}
