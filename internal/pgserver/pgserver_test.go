package pgserver_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/sqlworker/worker/internal/pgserver"
)

// Ensure a server started outside a test's cleanup (as the soak harness
// does) takes extra settings, and that Remove stops it, deletes its
// directory and is safe twice.
func TestServer_StartRemove(t *testing.T) {
	s, err := pgserver.Init()
	if errors.Is(err, pgserver.ErrUnavailable) && os.Getenv("CI") != "true" && os.Getuid() != 0 {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Remove() })
	if err := s.Start("max_connections=42"); err != nil {
		t.Fatal(err)
	}
	if !s.Running() {
		t.Fatal("Running after Start: got false, want true")
	}
	conn, err := pgx.Connect(context.Background(), s.URL())
	if err != nil {
		t.Fatal(err)
	}
	var maxConns string
	err = conn.QueryRow(context.Background(), "SHOW max_connections").Scan(&maxConns)
	_ = conn.Close(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got, want := maxConns, "42"; got != want {
		t.Errorf("max_connections: got %v, want %v", got, want)
	}
	if !strings.Contains(s.URL(), "host=") || !strings.Contains(s.DSN(), "host="+s.Dir()) {
		t.Fatalf("URL %q, DSN %q: want both to name the socket directory %s", s.URL(), s.DSN(), s.Dir())
	}
	log, err := os.ReadFile(s.LogFile())
	if err != nil {
		t.Fatal(err)
	}
	if len(log) == 0 {
		t.Error("server log: got nothing, want the server's start")
	}
	if err := s.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.Dir()); !os.IsNotExist(err) {
		t.Errorf("directory after Remove: got %v, want it gone", err)
	}
	if err := s.Remove(); err != nil {
		t.Errorf("second Remove: got %v, want nil", err)
	}
}

// Ensure two servers made from the one template cluster are independent:
// a table created on one is not on the other, and neither changes the
// template.
func TestInit_FromTemplate(t *testing.T) {
	ctx := context.Background()
	var urls []string
	for range 2 {
		s, err := pgserver.Init()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Remove() })
		if err := s.Start(); err != nil {
			t.Fatal(err)
		}
		urls = append(urls, s.URL())
	}
	exec := func(url, sql string) error {
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		_, err = conn.Exec(ctx, sql)
		return err
	}
	if err := exec(urls[0], "CREATE TABLE only_here (id int)"); err != nil {
		t.Fatal(err)
	}
	if err := exec(urls[1], "SELECT * FROM only_here"); err == nil {
		t.Fatal("the second server has the first one's table: got no error, want relation does not exist")
	}
	s, err := pgserver.Init()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Remove() })
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	if err := exec(s.URL(), "CREATE TABLE only_here (id int)"); err != nil {
		t.Fatalf("a server made after the table was created on another: got %v, want a fresh cluster", err)
	}
}
