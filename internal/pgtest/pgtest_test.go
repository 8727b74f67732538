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
