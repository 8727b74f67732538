package jobhistory_test

import (
	"context"
	"database/sql"
	"testing"

	"go.uber.org/goleak"

	"github.com/sqlworker/worker/internal/db"
	"github.com/sqlworker/worker/internal/pgtest"
	"github.com/sqlworker/worker/internal/workertest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// open returns the pool of a worker's handle, migrated, on a new database
// of backend ("sqlite" or "postgres"), closed at cleanup.
func open(tb testing.TB, backend string) *sql.DB {
	tb.Helper()
	var cfg db.Config
	if backend == "postgres" {
		srv := pgtest.New(tb)
		srv.Start(tb)
		cfg = db.Config{URL: srv.URL(), ReplicaID: "a", MaxOpenConns: 3}
	}
	d, err := workertest.MustOpenHandleWith(tb, cfg).Init(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	return d
}
