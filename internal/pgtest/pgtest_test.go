package pgtest_test

import (
	"context"
	"database/sql"
	"os"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/sqlworker/worker/internal/pgtest"
)

// Ensure Start gives a server that answers, with fsync off, and that it is
// gone after the test.
func TestStart(t *testing.T) {
	var host string
	t.Run("Serves", func(t *testing.T) {
		dsn := pgtest.Start(t)
		cfg, err := pgx.ParseConfig(dsn)
		if err != nil {
			t.Fatal(err)
		}
		host = cfg.Host
		db := sql.OpenDB(stdlib.GetConnector(*cfg))
		defer db.Close()
		var fsync string
		if err := db.QueryRowContext(context.Background(), "SHOW fsync").Scan(&fsync); err != nil {
			t.Fatal(err)
		}
		if got, want := fsync, "off"; got != want {
			t.Errorf("fsync: got %v, want %v", got, want)
		}
	})
	if !strings.HasPrefix(host, os.TempDir()) {
		t.Fatalf("host: got %v, want a directory under %v", host, os.TempDir())
	}
	if _, err := os.Stat(host); !os.IsNotExist(err) {
		t.Errorf("server directory after the test: got %v, want it removed", err)
	}
}

// Ensure a setting of Set holds from Start and across Restart, and that
// Restart ends the connections open before it while Connect connects
// again after it.
func TestServer_Restart(t *testing.T) {
	s := pgtest.New(t)
	s.Set("max_connections", "12")
	s.Start(t)
	ctx := context.Background()
	show := func(c *pgx.Conn) string {
		t.Helper()
		var v string
		if err := c.QueryRow(ctx, "SHOW max_connections").Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	before := s.Connect(t)
	if got, want := show(before), "12"; got != want {
		t.Errorf("max_connections after Start: got %v, want %v", got, want)
	}
	s.Restart(t)
	if _, err := before.Exec(ctx, "SELECT 1"); err == nil {
		t.Error("a connection from before Restart: got no error, want it ended")
	}
	if got, want := show(s.Connect(t)), "12"; got != want {
		t.Errorf("max_connections after Restart: got %v, want %v", got, want)
	}
}
