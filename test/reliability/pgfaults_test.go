package reliability_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/sqlworker/worker/internal/pgtest"
	"github.com/sqlworker/worker/internal/workertest"
)

// pgFaultConfig runs the heartbeat and one SQL job, tick, every second.
const pgFaultConfig = `builtin:
  heartbeat: {schedule: "@every 1s"}
jobs:
  - name: tick
    schedule: "* * * * * *"
    timeout: 5s
    sql: SELECT 1
`

// pgFaultLimit bounds each wait of the server-fault tests.
const pgFaultLimit = 30 * time.Second

// pgFaultMaxConnections is the server's max_connections: room for both
// replicas' pools (4 each) and the test's own connection, and few enough
// for the test to take every slot.
const pgFaultMaxConnections = 12

// pgReplicas are two worker binaries on one PostgreSQL server, and the
// test's own superuser connection to it.
type pgReplicas struct {
	srv *pgtest.Server
	ws  []*workertest.Worker
	ids []string
	own *pgx.Conn // reconnected by pg after the server ended it
}

func startPGReplicas(t *testing.T) *pgReplicas {
	t.Helper()
	r := &pgReplicas{srv: pgtest.New(t)}
	r.srv.Set("max_connections", fmt.Sprint(pgFaultMaxConnections))
	// pgtest turns synchronous_commit off for speed: a crash (Stop is
	// pg_ctl stop -m immediate) then loses the last commits, the worker's
	// migrations or a tick's claim among them. Fault tests need a commit to
	// be one; with fsync off it is still cheap.
	r.srv.Set("synchronous_commit", "on")
	r.srv.Start(t)
	for i := range 2 {
		id := fmt.Sprintf("pgf-%d", i+1)
		r.ids = append(r.ids, id)
		r.ws = append(r.ws, StartWorker(t, workertest.Options{Config: pgFaultConfig, DBURL: r.srv.URL(),
			Args: []string{"--db.replica-id", id}}))
	}
	return r
}

// pg returns the test's own connection, connecting again when the server
// ended the last one.
func (r *pgReplicas) pg(t *testing.T) *pgx.Conn {
	t.Helper()
	if r.own != nil && r.own.Ping(context.Background()) == nil {
		return r.own
	}
	r.own = r.srv.Connect(t)
	return r.own
}

// backends returns the server's backends of the replica's application_name.
func (r *pgReplicas) backends(t *testing.T, c *pgx.Conn, id string) int {
	t.Helper()
	var n int
	if err := c.QueryRow(context.Background(), "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", "worker-"+id).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// waitReady waits until every replica's /readyz answers 200 and returns how
// long that took, and the last 503 body seen: what held it up last.
func (r *pgReplicas) waitReady(t *testing.T) (time.Duration, string) {
	t.Helper()
	start := time.Now()
	var last string
	for _, w := range r.ws {
		w.WaitFor(t, "ready", pgFaultLimit, func() bool {
			code, body, err := w.Get("/readyz")
			if err == nil && code == 503 {
				last = strings.TrimSpace(body)
			}
			return err == nil && code == 200
		})
	}
	return time.Since(start), last
}

// waitFault waits until every replica's /readyz answers 503 with a body
// holding each of want, and returns how long that took and the last body.
func (r *pgReplicas) waitFault(t *testing.T, want ...string) (time.Duration, string) {
	t.Helper()
	start := time.Now()
	var body string
	for _, w := range r.ws {
		w.WaitFor(t, "503 naming "+strings.Join(want, " and "), pgFaultLimit, func() bool {
			code, b, err := w.Get("/readyz")
			if err != nil || code != 503 {
				return false
			}
			for _, s := range want {
				if !strings.Contains(b, s) {
					return false
				}
			}
			body = b
			return true
		})
	}
	return time.Since(start), strings.TrimSpace(body)
}

// waitBaseline waits until each replica is at rest as before any fault:
// one handle, and its open connections, as the client counts them
// (worker_db_connections_open, go_sql_open_connections), as it reads them
// from the server (worker_db_server_connections summed over states) and as
// the test sees them in pg_stat_activity, all the same number, within the
// pool's bound. A connection the server dropped that the client still
// counts, or a backend the client does not, breaks the equality. The pool
// keeps as many idle connections as it last needed at once, so the number
// itself may differ from one rest to the next.
func (r *pgReplicas) waitBaseline(t *testing.T) []int {
	t.Helper()
	counts := make([]int, len(r.ws))
	for i, w := range r.ws {
		w.WaitFor(t, "connections back to their baseline", pgFaultLimit, func() bool {
			m, err := w.TryScrape()
			if err != nil {
				return false
			}
			handles := workertest.Sum(m["worker_db_handles_open"], nil)
			client := workertest.Sum(m["worker_db_connections_open"], nil)
			server := workertest.Sum(m["worker_db_server_connections"], nil)
			pool := workertest.Sum(m["go_sql_open_connections"], nil)
			seen := float64(r.backends(t, r.pg(t), r.ids[i]))
			counts[i] = int(client)
			return handles == 1 && client >= 1 && client <= 4 && client == pool && client == server && client == seen
		})
	}
	return counts
}

// successes returns the successful runs of tick scheduled after since.
func (r *pgReplicas) successes(t *testing.T, since time.Time) int {
	t.Helper()
	var n int
	if err := r.pg(t).QueryRow(context.Background(),
		"SELECT count(*) FROM job_runs WHERE job = 'tick' AND result = 'success' AND scheduled_at > $1", since).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// check asserts what holds after every fault: both replicas ready and
// running ticks again, no tick with two successes, the connections back
// to their baseline, and the processes the same.
func (r *pgReplicas) check(t *testing.T, since time.Time) {
	t.Helper()
	r.waitReady(t)
	resumed := time.Now()
	r.ws[0].WaitFor(t, "ticks running again", pgFaultLimit, func() bool { return r.successes(t, resumed) >= 2 })
	rows, err := r.pg(t).Query(context.Background(),
		"SELECT scheduled_at, count(*) FROM job_runs WHERE job = 'tick' AND result = 'success' GROUP BY 1 HAVING count(*) > 1")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var at time.Time
		var n int
		if err := rows.Scan(&at, &n); err != nil {
			t.Fatal(err)
		}
		t.Errorf("tick %s: got %d successes, want at most 1", at.Format(time.RFC3339), n)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	t.Logf("connections at rest: %v (client = server = pg_stat_activity); %d ticks succeeded since the fault began",
		r.waitBaseline(t), r.successes(t, since))
	for i, w := range r.ws {
		if w.Exited() {
			t.Fatalf("replica %s exited: %v", r.ids[i], w.Err())
		}
	}
}

// watchReadyz polls every replica's /readyz until stop is called, and
// returns the first 503 body seen, for faults too brief to wait for.
func (r *pgReplicas) watchReadyz() (stop func() string) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first string
	for _, w := range r.ws {
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				case <-time.After(20 * time.Millisecond):
				}
				if code, body, err := w.Get("/readyz"); err == nil && code == 503 {
					mu.Lock()
					if first == "" {
						first = strings.TrimSpace(body)
					}
					mu.Unlock()
				}
			}
		})
	}
	return func() string {
		close(done)
		wg.Wait()
		return first
	}
}

// Ensure two replicas on one PostgreSQL server, with jobs every second,
// live through the server's faults: stopped (and started again once both
// replicas noticed), restarted with pg_ctl restart, their backends ended
// with pg_terminate_backend, and max_connections taken by another client.
// In each the processes stay up, /readyz names the fault while it lasts
// where it lasts long enough to see, they recover by themselves, no tick
// has two successes in job_runs, and the connections, client and server
// side, return to their baseline.
func TestPGFault_Server(t *testing.T) {
	t.Parallel()
	r := startPGReplicas(t)
	r.waitReady(t)
	t.Logf("baseline connections: %v", r.waitBaseline(t))

	t.Run("StopStart", func(t *testing.T) {
		since := time.Now()
		r.srv.Stop(t)
		noticed, body := r.waitFault(t, "database: cannot reach postgres: ")
		r.srv.Start(t)
		recovered, last := r.waitReady(t)
		t.Logf("server down: /readyz 503 after %s (%q); 200 again %s after the start (last 503: %q)", noticed, body, recovered, last)
		r.check(t, since)
	})

	t.Run("Restart", func(t *testing.T) {
		// The server is down for a fraction of a second: a check may or may
		// not fall in it, so recovery is what is asserted.
		since := time.Now()
		stop := r.watchReadyz()
		r.srv.Restart(t)
		restarted := time.Now()
		recovered, _ := r.waitReady(t)
		t.Logf("pg_ctl restart took %s; 503 seen meanwhile: %q; ready %s after", restarted.Sub(since), stop(), recovered)
		r.check(t, since)
	})

	t.Run("Terminate", func(t *testing.T) {
		// The replicas connect again at once: a dropped connection is no
		// outage, and /readyz is not expected to say anything.
		since := time.Now()
		stop := r.watchReadyz()
		var ended int
		if err := r.pg(t).QueryRow(context.Background(),
			"SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE 'worker-pgf-%') t").Scan(&ended); err != nil {
			t.Fatal(err)
		}
		if ended < 2 {
			t.Fatalf("backends ended: got %d, want at least one per replica", ended)
		}
		r.waitReady(t)
		base := r.waitBaseline(t)
		t.Logf("%d backends ended; 503 seen meanwhile: %q; connections back to their baseline %v %s after", ended, stop(), base, time.Since(since))
		r.check(t, since)
	})

	t.Run("MaxConnections", func(t *testing.T) {
		since := time.Now()
		held := r.takeAllSlots(t)
		noticed, body := r.waitFault(t, "database: cannot reach postgres: ", "too many clients")
		for _, c := range held {
			_ = c.Close(context.Background())
		}
		recovered, last := r.waitReady(t)
		t.Logf("%d connections held; /readyz 503 after %s (%q); 200 again %s after the release (last 503: %q)", len(held), noticed, body, recovered, last)
		r.check(t, since)
	})

	for i, w := range r.ws {
		if code, _ := w.Stop(t, pgFaultLimit); code != 0 {
			t.Errorf("replica %s exit code: got %d, want 0", r.ids[i], code)
		}
	}
}

// takeAllSlots connects to the server until it refuses with too many
// clients (SQLSTATE 53300), ending the replicas' backends so that they
// cannot keep theirs, until the replicas have none and the test holds every
// slot. It returns the connections it holds.
func (r *pgReplicas) takeAllSlots(t *testing.T) []*pgx.Conn {
	t.Helper()
	var held []*pgx.Conn
	t.Cleanup(func() {
		for _, c := range held {
			_ = c.Close(context.Background())
		}
	})
	deadline := time.Now().Add(pgFaultLimit)
	for {
		for {
			c, err := pgx.Connect(context.Background(), r.srv.DSN())
			var pe *pgconn.PgError
			if errors.As(err, &pe) && pe.Code == "53300" {
				break
			}
			if err != nil {
				t.Fatalf("connect: got %v, want a connection or SQLSTATE 53300", err)
			}
			held = append(held, c)
		}
		if len(held) == 0 {
			t.Fatal("the server refused the first connection")
		}
		var theirs int
		if err := held[0].QueryRow(context.Background(),
			"SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE 'worker-pgf-%') t").Scan(&theirs); err != nil {
			t.Fatal(err)
		}
		if theirs == 0 {
			return held
		}
		if time.Now().After(deadline) {
			t.Fatalf("the replicas still had %d backends after %s", theirs, pgFaultLimit)
		}
	}
}
