// Package pgserver runs a throwaway PostgreSQL server of the machine's
// postgresql package: Init runs initdb in a new temporary directory, Start
// runs the server there, listening on a unix socket in that directory only,
// with fsync off, and Remove stops it and deletes the directory.
//
// Init copies a cluster that initdb made once (see template) rather than
// running initdb for each server.
//
// As root, the server runs as the postgres user (initdb refuses root), with
// runuser, in a directory chowned to that user; as another user, as that
// user. internal/pgtest wraps it for tests, and the soak harness uses it to
// soak replicas on PostgreSQL outside go test.
package pgserver

import (
	"bytes"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"time"
)

// User is the superuser of the servers Init creates, and Database the
// database that DSN and URL name.
const (
	User     = "postgres"
	Database = "postgres"
)

// StartTimeout bounds the wait for the server to accept connections.
const StartTimeout = 60 * time.Second

// ErrUnavailable is returned, wrapped, by Init when the postgresql package
// (initdb, pg_ctl) or, as root, the postgres user is missing.
var ErrUnavailable = errors.New("PostgreSQL is not available")

// Server is a server's data directory, started and stopped on demand.
type Server struct {
	dir, data, bin, runAs string
	running               bool
	opts                  string // of the last Start, which Restart keeps
}

// Init runs initdb for a new server in a new directory under the system's
// temporary directory and returns it, not running. Call Remove when done.
func Init() (*Server, error) {
	bin, err := binDir()
	if err != nil {
		return nil, fmt.Errorf("%w (apt-get install postgresql): %v", ErrUnavailable, err)
	}
	runAs, uid, gid, err := account()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	// Not a 0700 directory owned by root, which the postgres user cannot
	// enter. The socket path must stay under 107 bytes: /tmp is short.
	dir, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		return nil, fmt.Errorf("cannot create the server's directory: %w", err)
	}
	if uid >= 0 {
		if err := os.Chown(dir, uid, gid); err != nil {
			_ = os.RemoveAll(dir)
			return nil, fmt.Errorf("cannot give %s to the postgres user: %w", dir, err)
		}
	}
	s := &Server{dir: dir, data: filepath.Join(dir, "data"), bin: bin, runAs: runAs}
	if err := s.initData(uid, gid); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("cannot initialise the server: %w", err)
	}
	return s, nil
}

// initData fills the server's data directory: a copy of the template
// cluster (see template), or, when there is none to copy, initdb's own.
func (s *Server) initData(uid, gid int) error {
	if tpl, err := template(s.bin, s.runAs, uid, gid); err == nil {
		if err := exec.Command("cp", "-a", tpl, s.data).Run(); err == nil {
			return nil
		}
		_ = os.RemoveAll(s.data)
	}
	return s.initdb(s.data)
}

func (s *Server) initdb(data string) error {
	return s.run("initdb", "-D", data, "-U", User, "-A", "trust", "-E", "UTF8", "--no-sync", "--no-instructions")
}

// template returns the data directory of a cluster that initdb made once
// per machine, PostgreSQL version and user, under the temporary directory,
// for Init to copy: initdb takes most of a new server's time (0.7 s, the
// copy 0.25 s), and a test suite starts dozens. It is made in a directory
// of its own and renamed into place, so that a process racing to make it
// too, or one killed halfway, leaves no half-made template.
func template(bin, runAs string, uid, gid int) (string, error) {
	final := filepath.Join(os.TempDir(), fmt.Sprintf("pgserver-template-%d-uid%d", version(filepath.Join(bin, "initdb")), os.Getuid()))
	data := filepath.Join(final, "data")
	if _, err := os.Stat(filepath.Join(data, "global", "pg_control")); err == nil {
		return data, nil
	}
	tmp, err := os.MkdirTemp("", "pgserver-template-new-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp) // gone once renamed
	if uid >= 0 {
		if err := os.Chown(tmp, uid, gid); err != nil {
			return "", err
		}
	}
	maker := &Server{dir: tmp, bin: bin, runAs: runAs}
	if err := maker.initdb(filepath.Join(tmp, "data")); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, final); err != nil {
		if _, statErr := os.Stat(filepath.Join(data, "global", "pg_control")); statErr != nil {
			return "", err
		}
		// Another process made it first: use theirs.
	}
	return data, nil
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

// Start starts the server and waits until it accepts connections. Extra
// settings (name=value) are passed to the server as -c options.
func (s *Server) Start(settings ...string) error {
	opts := "-c listen_addresses='' -c unix_socket_directories=" + s.dir +
		" -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
	for _, kv := range settings {
		opts += " -c " + kv
	}
	s.opts = opts
	return s.pgCtl("start")
}

// Restart restarts the running server with the settings of its Start, as
// `pg_ctl restart -m fast` does (its backends are terminated), and waits
// until it accepts connections again.
func (s *Server) Restart() error {
	return s.pgCtl("restart", "-m", "fast")
}

func (s *Server) pgCtl(action string, args ...string) error {
	argv := append([]string{"-D", s.data, "-l", s.LogFile(), "-o", s.opts, "-w", "-t", strconv.Itoa(int(StartTimeout.Seconds()))}, args...)
	if err := s.run("pg_ctl", append(argv, action)...); err != nil {
		log, _ := os.ReadFile(s.LogFile())
		return fmt.Errorf("cannot %s the server: %w\n%s", action, err, log)
	}
	s.running = true
	return nil
}

// Stop stops the server at once (pg_ctl -m immediate).
func (s *Server) Stop() error {
	if err := s.run("pg_ctl", "-D", s.data, "-m", "immediate", "-w", "stop"); err != nil {
		return fmt.Errorf("cannot stop the server: %w", err)
	}
	s.running = false
	return nil
}

// Running reports whether the server was started and not stopped since.
func (s *Server) Running() bool { return s.running }

// Remove stops the server if it runs and deletes its directory. It is safe
// to call twice.
func (s *Server) Remove() error {
	var err error
	if s.running {
		err = s.Stop()
	}
	if rmErr := os.RemoveAll(s.dir); rmErr != nil && err == nil {
		err = fmt.Errorf("cannot remove the server's directory: %w", rmErr)
	}
	return err
}

// Dir returns the server's directory, which holds its unix socket.
func (s *Server) Dir() string { return s.dir }

// LogFile returns the path of the server's log.
func (s *Server) LogFile() string { return filepath.Join(s.dir, "server.log") }

// DSN returns the server's DSN, in the key=value form that pgx and libpq
// take.
func (s *Server) DSN() string {
	return fmt.Sprintf("host=%s port=5432 user=%s dbname=%s sslmode=disable", s.dir, User, Database)
}

// URL returns the server's postgres:// URL, with the socket directory in
// the host parameter.
func (s *Server) URL() string {
	return "postgres://" + User + "@/" + Database + "?host=" + url.QueryEscape(s.dir) + "&sslmode=disable"
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
