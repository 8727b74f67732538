package reliability_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/sqlworker/worker/internal/pgtest"
	"github.com/sqlworker/worker/internal/workertest"
)

// Ensure two workers with the same replica id (so the same
// application_name) on two databases of one server each count only their
// own backends in worker_db_server_connections, equal to their pool's open
// connections and to the server's count of that database's backends, also
// after one's backends were ended while the other's live on (what the
// dead-connection check compares). Before, each selected
// pg_stat_activity by application_name only and counted the other's
// backends too (5 where there were 3).
func TestPGDatabases_SameReplicaID(t *testing.T) {
	t.Parallel()
	srv := pgtest.New(t)
	srv.Start(t)
	pg := srv.Connect(t)
	ctx := context.Background()
	if _, err := pg.Exec(ctx, `CREATE DATABASE other`); err != nil {
		t.Fatal(err)
	}
	// Jobs every second keep a few connections of each pool open.
	const config = `jobs:
  - {name: a, schedule: "* * * * * *", sql: "SELECT pg_sleep(0.3)"}
  - {name: b, schedule: "* * * * * *", sql: "SELECT pg_sleep(0.3)"}
`
	dbs := []string{"postgres", "other"}
	ws := make([]*workertest.Worker, len(dbs))
	for i, name := range dbs {
		url := strings.Replace(srv.URL(), "/postgres?", "/"+name+"?", 1)
		ws[i] = StartWorker(t, workertest.Options{Config: config, DBURL: url, LogLevel: "info",
			Args: []string{"--db.replica-id", "same"}})
	}
	backends := func(db string) int {
		var n int
		if err := pg.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE application_name = 'worker-same' AND datname = $1`, db).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	// own reports whether worker i's server count is its pool's and its
	// database's, and that the other database has backends too (so that
	// counting them would show).
	own := func(i int) bool {
		m := ws[i].Scrape(t)
		server := workertest.Sum(m["worker_db_server_connections"], nil)
		client := workertest.Sum(m["worker_db_connections_open"], nil)
		return server > 0 && server == client && int(server) == backends(dbs[i]) && backends(dbs[1-i]) > 0
	}
	for i := range ws {
		ws[i].WaitFor(t, "worker on "+dbs[i]+" counting only its own backends", 30*time.Second, func() bool { return own(i) })
	}

	// End the first worker's backends only: it replaces them and counts
	// its own again, though the other's live on.
	if _, err := pg.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'worker-same' AND datname = 'postgres'`); err != nil {
		t.Fatal(err)
	}
	ws[0].WaitFor(t, "worker on postgres counting only its own backends after they were ended", 30*time.Second, func() bool { return own(0) })
	for i, w := range ws {
		if code, _ := w.Stop(t, time.Minute); code != 0 {
			t.Errorf("worker on %s: exit code %d, want 0", dbs[i], code)
		}
	}
}
