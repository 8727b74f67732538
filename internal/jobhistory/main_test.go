package jobhistory_test

import (
	"context"
	"database/sql"
	"testing"

	"go.uber.org/goleak"

	"github.com/sqlworker/worker/internal/db"
	"github.com/sqlworker/worker/internal/pgtest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// pgHandle returns a Handle on srv as replica id, closed at cleanup.
func pgHandle(t testing.TB, srv *pgtest.Server, id string) *db.Handle {
	t.Helper()
	h := db.New(db.Config{URL: srv.URL(), ReplicaID: id, MaxOpenConns: 3})
	t.Cleanup(func() {
		if err := h.Close(context.Background()); err != nil {
			t.Error(err)
		}
	})
	return h
}

// startPG returns a running server for t.
func startPG(t testing.TB) *pgtest.Server {
	t.Helper()
	srv := pgtest.New(t)
	srv.Start(t)
	return srv
}

func mustInit(t testing.TB, h *db.Handle) *sql.DB {
	t.Helper()
	d, err := h.Init(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return d
}
