package reliability_test

import (
	"database/sql"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/sqlworker/worker/internal/pgtest"
	"github.com/sqlworker/worker/internal/workertest"
)

// replicaWait bounds each wait of the replica tests.
const replicaWait = 60 * time.Second

// replicaSet is workers sharing one PostgreSQL server, each with its
// replica id r<i>, hence its owner worker-r<i> in job_claims.
type replicaSet struct {
	srv *pgtest.Server
	db  *sql.DB // the test's own handle
	ws  []*workertest.Worker
}

// startReplicas starts a server, runs setup SQL on it, and starts n
// workers on it with config; each changes the options of replica i.
func startReplicas(t *testing.T, n int, config, setup string, each ...func(i int, o *workertest.Options)) *replicaSet {
	t.Helper()
	srv := pgtest.New(t)
	srv.Start(t)
	cfg, err := pgx.ParseConfig(srv.DSN())
	if err != nil {
		t.Fatal(err)
	}
	rs := &replicaSet{srv: srv, db: stdlib.OpenDB(*cfg)}
	t.Cleanup(func() { _ = rs.db.Close() })
	if setup != "" {
		if _, err := rs.db.Exec(setup); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		o := workertest.Options{Config: config, DBURL: srv.URL(), LogLevel: "info",
			Args: []string{"--db.replica-id", fmt.Sprintf("r%d", i)}}
		for _, f := range each {
			f(i, &o)
		}
		rs.ws = append(rs.ws, StartWorker(t, o))
	}
	rs.waitDB(t, "job_claims and job_runs created", replicaWait, func() bool {
		var ok bool
		err := rs.db.QueryRow(`SELECT to_regclass('job_claims') IS NOT NULL AND to_regclass('job_runs') IS NOT NULL`).Scan(&ok)
		return err == nil && ok
	})
	return rs
}

// owner returns the worker whose job_claims owner is name.
func (rs *replicaSet) owner(t *testing.T, name string) *workertest.Worker {
	t.Helper()
	for i, w := range rs.ws {
		if name == fmt.Sprintf("worker-r%d", i) {
			return w
		}
	}
	t.Fatalf("owner %q: not one of the replicas", name)
	return nil
}

// waitDB polls cond until it holds, failing after limit.
func (rs *replicaSet) waitDB(t *testing.T, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, limit)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// int returns the first column of a one-row query as an int.
func (rs *replicaSet) int(t *testing.T, q string, args ...any) int {
	t.Helper()
	var n int
	if err := rs.db.QueryRow(q, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}

// serverNow is the server's clock, truncated to the second.
func (rs *replicaSet) serverNow(t *testing.T) time.Time {
	t.Helper()
	var now time.Time
	if err := rs.db.QueryRow(`SELECT date_trunc('second', clock_timestamp())`).Scan(&now); err != nil {
		t.Fatal(err)
	}
	return now
}

// tickCheck is what each tick of a job in a window ended as.
type tickCheck struct {
	at                      time.Time
	claims, successes       int // job_claims rows, job_runs successes
	status, owner           string
	attempt                 int
	finished                sql.NullTime
	earlyRuns, earlyClaims  int // job_runs rows and claims started before the tick by the server's clock
	skippedRuns, failedRuns int
}

// ticks returns one tickCheck per second of job's ticks in [from, to).
func (rs *replicaSet) ticks(t *testing.T, job string, from, to time.Time, every time.Duration) []tickCheck {
	t.Helper()
	rows, err := rs.db.Query(`SELECT s,
	(SELECT count(*) FROM job_claims c WHERE c.job = $1 AND c.scheduled_at = s),
	(SELECT count(*) FROM job_runs r WHERE r.job = $1 AND r.scheduled_at = s AND r.result = 'success'),
	coalesce((SELECT status FROM job_claims c WHERE c.job = $1 AND c.scheduled_at = s), ''),
	coalesce((SELECT owner FROM job_claims c WHERE c.job = $1 AND c.scheduled_at = s), ''),
	coalesce((SELECT attempt FROM job_claims c WHERE c.job = $1 AND c.scheduled_at = s), 0),
	(SELECT finished_at FROM job_claims c WHERE c.job = $1 AND c.scheduled_at = s),
	(SELECT count(*) FROM job_runs r WHERE r.job = $1 AND r.scheduled_at = s AND r.started_at < s),
	(SELECT count(*) FROM job_claims c WHERE c.job = $1 AND c.scheduled_at = s AND c.started_at < s),
	(SELECT count(*) FROM job_runs r WHERE r.job = $1 AND r.scheduled_at = s AND r.result = 'skipped'),
	(SELECT count(*) FROM job_runs r WHERE r.job = $1 AND r.scheduled_at = s AND r.result <> 'success' AND r.result <> 'skipped')
FROM generate_series($2::timestamptz, $3::timestamptz - interval '1 microsecond', $4 * interval '1 microsecond') AS s
ORDER BY s`, job, from, to, every.Microseconds())
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []tickCheck
	for rows.Next() {
		var c tickCheck
		if err := rows.Scan(&c.at, &c.claims, &c.successes, &c.status, &c.owner, &c.attempt, &c.finished,
			&c.earlyRuns, &c.earlyClaims, &c.skippedRuns, &c.failedRuns); err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// settled waits until the job's ticks before to are no longer running.
func (rs *replicaSet) settled(t *testing.T, job string, to time.Time) {
	t.Helper()
	rs.waitDB(t, job+"'s ticks before "+to.Format(time.TimeOnly)+" finished", replicaWait, func() bool {
		return rs.int(t, `SELECT count(*) FROM job_claims WHERE job = $1 AND scheduled_at >= $2`, job, to) > 0 &&
			rs.int(t, `SELECT count(*) FROM job_claims WHERE job = $1 AND scheduled_at < $2 AND status = 'running'`, job, to) == 0
	})
}

const replicaJobs = 3

// Ensure three replicas on one PostgreSQL server, each running the same
// jobs every second, run every tick of a window of 45 s to success exactly
// once (job_runs) with one job_claims row, never before the tick by the
// server's clock, and share the claims: each replica won some.
func TestReplicas_EachTickOnce(t *testing.T) {
	var b strings.Builder
	b.WriteString("jobs:\n")
	for i := range replicaJobs {
		fmt.Fprintf(&b, "  - name: each_%d\n    schedule: \"* * * * * *\"\n    sql: INSERT INTO rep_events VALUES ('each_%d')\n", i, i)
	}
	rs := startReplicas(t, 3, b.String(), `CREATE TABLE rep_events (job text NOT NULL)`)
	rs.waitDB(t, "every replica runs", replicaWait, func() bool {
		return rs.int(t, `SELECT count(DISTINCT owner) FROM job_claims WHERE status = 'succeeded'`) == 3
	})
	const window = 45 * time.Second
	from := rs.serverNow(t).Add(time.Second)
	to := from.Add(window)
	for i := range replicaJobs {
		rs.settled(t, fmt.Sprintf("each_%d", i), to)
	}
	for _, w := range rs.ws {
		if w.Exited() {
			t.Fatalf("a replica exited: %v", w.Err())
		}
	}
	for i := range replicaJobs {
		job := fmt.Sprintf("each_%d", i)
		cs := rs.ticks(t, job, from, to, time.Second)
		if len(cs) != int(window/time.Second) {
			t.Fatalf("%s's ticks: got %d, want %d", job, len(cs), int(window/time.Second))
		}
		for _, c := range cs {
			if c.claims != 1 || c.successes != 1 || c.status != "succeeded" || c.earlyRuns != 0 || c.earlyClaims != 0 {
				t.Errorf("%s tick %s: got %d claims (%s), %d successes, %d runs and %d claims started early, want 1 succeeded claim, 1 success, none early",
					job, c.at.Format(time.TimeOnly), c.claims, c.status, c.successes, c.earlyRuns, c.earlyClaims)
			}
		}
	}
	for i := range rs.ws {
		owner := fmt.Sprintf("worker-r%d", i)
		n := rs.int(t, `SELECT count(*) FROM job_claims WHERE owner = $1 AND job LIKE 'each_%' AND status = 'succeeded' AND scheduled_at >= $2 AND scheduled_at < $3`,
			owner, from, to)
		t.Logf("%s won %d of %d ticks", owner, n, replicaJobs*int(window/time.Second))
		if n == 0 {
			t.Errorf("ticks %s won: got 0, want some (claims spread over the replicas)", owner)
		}
	}
	for i, w := range rs.ws {
		if code, _ := w.Stop(t, replicaWait); code != 0 {
			t.Errorf("replica r%d's exit code: got %d, want 0", i, code)
		}
	}
	bodies, successes := rs.int(t, `SELECT count(*) FROM rep_events`), rs.int(t, `SELECT count(*) FROM job_runs WHERE job LIKE 'each_%' AND result = 'success'`)
	if bodies != successes {
		t.Errorf("bodies run: got %d, want %d, one per success in job_runs", bodies, successes)
	}
}

// slowConfig is a job every period seconds whose SQL takes sleep seconds,
// under a lease of 2 s.
func slowConfig(period, sleep int) string {
	return fmt.Sprintf(`scheduler:
  lease: 2s
jobs:
  - name: slow
    schedule: "*/%d * * * * *"
    timeout: 30s
    sql: SELECT pg_sleep(%d)
`, period, sleep)
}

// runningClaim waits for a first attempt of the slow job running, and
// returns its tick and owner.
func (rs *replicaSet) runningClaim(t *testing.T) (time.Time, string) {
	t.Helper()
	var tick time.Time
	var owner string
	rs.waitDB(t, "a run of slow", replicaWait, func() bool {
		err := rs.db.QueryRow(`SELECT scheduled_at, owner FROM job_claims WHERE job = 'slow' AND status = 'running' AND attempt = 1
			AND scheduled_at > now() - interval '1 second'`).Scan(&tick, &owner)
		return err == nil
	})
	return tick, owner
}

// Ensure a replica SIGKILLed mid-run has its tick taken over once its lease
// of 2 s ran out, by another replica (attempt 2), which runs it to success
// once; that the later ticks are each recorded once, skipped while the
// taken-over run still went, and run after it; and that none is missed.
func TestReplicas_SIGKILLTakenOver(t *testing.T) {
	rs := startReplicas(t, 3, slowConfig(4, 2), "")
	tick, owner := rs.runningClaim(t)
	killed := rs.owner(t, owner)
	killed.Kill(t)
	killedAt := time.Now()
	var takeover string
	var finished time.Time
	rs.waitDB(t, "the killed run taken over and finished", replicaWait, func() bool {
		err := rs.db.QueryRow(`SELECT owner, finished_at FROM job_claims WHERE job = 'slow' AND scheduled_at = $1
			AND status = 'succeeded' AND attempt = 2`, tick).Scan(&takeover, &finished)
		return err == nil
	})
	t.Logf("tick %s: %s killed, taken over by %s, which finished it %s after the kill", tick.Format(time.TimeOnly), owner, takeover, time.Since(killedAt).Round(time.Millisecond))
	if takeover == owner {
		t.Errorf("owner of the taken-over tick: got %s, the killed replica", takeover)
	}
	to := tick.Add(24 * time.Second)
	rs.settled(t, "slow", to)
	cs := rs.ticks(t, "slow", tick, to, 4*time.Second)
	if c := cs[0]; c.successes != 1 || c.claims != 1 {
		t.Errorf("killed tick: got %d successes, %d claims, want 1 and 1", c.successes, c.claims)
	}
	afterTakeover := 0
	for _, c := range cs[1:] {
		switch {
		case c.claims != 1:
			t.Errorf("tick %s: got %d job_claims rows, want 1", c.at.Format(time.TimeOnly), c.claims)
		case c.status == "skipped" && c.at.Before(finished) && c.skippedRuns == 1 && c.successes == 0:
			// Found the taken-over run going: recorded skipped once.
		case c.status == "succeeded" && c.successes == 1 && c.skippedRuns == 0:
			if c.at.After(finished) {
				afterTakeover++
			}
		default:
			t.Errorf("tick %s: got %s with %d successes and %d skipped runs, want succeeded once, or skipped once before the takeover's end %s",
				c.at.Format(time.TimeOnly), c.status, c.successes, c.skippedRuns, finished.Format(time.TimeOnly))
		}
	}
	if afterTakeover < 4 {
		t.Errorf("ticks run after the takeover: got %d, want ≥ 4", afterTakeover)
	}
	if n := rs.int(t, `SELECT count(*) FROM job_claims WHERE status = 'missed'`); n != 0 {
		t.Errorf("missed ticks: got %d, want 0", n)
	}
}

// Ensure a replica SIGSTOPped mid-run past its lease of 2 s, then
// SIGCONTed once another replica took its tick over, has its stale finish
// refused and counted (worker_job_fenced_finishes_total, a log line), and
// that the tick still has exactly one success.
func TestReplicas_SIGSTOPFenced(t *testing.T) {
	rs := startReplicas(t, 3, slowConfig(5, 3), "")
	tick, owner := rs.runningClaim(t)
	paused := rs.owner(t, owner)
	if err := paused.Cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			_ = paused.Cmd.Process.Signal(syscall.SIGCONT)
		}
	}
	t.Cleanup(resume)
	rs.waitDB(t, "the paused run taken over", replicaWait, func() bool {
		return rs.int(t, `SELECT count(*) FROM job_claims WHERE job = 'slow' AND scheduled_at = $1 AND attempt = 2 AND owner <> $2`,
			tick, owner) == 1
	})
	resume()
	paused.WaitFor(t, "the stale finish fenced", replicaWait, func() bool {
		return workertest.Sum(paused.Scrape(t)["worker_job_fenced_finishes_total"], map[string]string{"job_name": "slow"}) >= 1
	})
	rs.waitDB(t, "the taken-over run finished", replicaWait, func() bool {
		return rs.int(t, `SELECT count(*) FROM job_claims WHERE job = 'slow' AND scheduled_at = $1 AND status = 'succeeded'`, tick) == 1
	})
	if n := rs.int(t, `SELECT count(*) FROM job_runs WHERE job = 'slow' AND scheduled_at = $1 AND result = 'success'`, tick); n != 1 {
		t.Errorf("successes of the paused tick: got %d, want 1", n)
	}
	if !strings.Contains(paused.Logs(), `msg="Finish refused: the tick was taken over"`) {
		t.Errorf("paused replica's log: want a refused finish, got\n%s", paused.Logs())
	}
	if paused.Exited() {
		t.Errorf("paused replica exited: %v", paused.Err())
	}
}

// Ensure replicas whose clocks run ahead and behind the server's (a worker
// built with -tags clockskew, WORKER_CLOCK_OFFSET) beside one on time run
// each tick of a job every second once, to success, and never before its
// scheduled time by the server's clock: every claim's started_at, the
// server's now(), is at or after its tick. The offsets show in
// worker_db_clock_offset_seconds (the server's clock minus the replica's).
func TestReplicas_ClockSkew(t *testing.T) {
	skewBin := workertest.BuildOnce(t, "clockskew")
	offsets := []string{"", "3s", "-3s"}
	config := "jobs:\n  - name: skew\n    schedule: \"* * * * * *\"\n    sql: INSERT INTO rep_events VALUES ('skew')\n"
	rs := startReplicas(t, 3, config, `CREATE TABLE rep_events (job text NOT NULL)`, func(i int, o *workertest.Options) {
		if offsets[i] != "" {
			o.Bin, o.Env = skewBin, []string{"WORKER_CLOCK_OFFSET=" + offsets[i]}
		}
	})
	for i, want := range []float64{-3, 3} {
		w := rs.ws[i+1]
		w.WaitFor(t, "the clock offset measured", replicaWait, func() bool {
			got := workertest.Sum(w.Scrape(t)["worker_db_clock_offset_seconds"], nil)
			return got > want-0.5 && got < want+0.5
		})
	}
	const window = 20 * time.Second
	from := rs.serverNow(t).Add(time.Second)
	to := from.Add(window)
	rs.settled(t, "skew", to)
	succeeded := 0
	for _, c := range rs.ticks(t, "skew", from, to, time.Second) {
		ok := c.claims == 1 && c.earlyClaims == 0
		switch c.status {
		case "succeeded":
			succeeded++
			ok = ok && c.successes == 1
		case "skipped":
			// A tick found another tick's run going (a replica behind won a
			// tick late, the others being slower still): recorded skipped
			// once, and only while a run had the job.
			ok = ok && c.successes == 0 && c.skippedRuns == 1 && rs.int(t, `SELECT count(*) FROM job_claims b, job_claims s
				WHERE s.job = 'skew' AND s.scheduled_at = $1 AND b.job = 'skew' AND b.scheduled_at < s.scheduled_at
				AND b.started_at <= s.started_at AND b.finished_at >= s.scheduled_at`, c.at) == 1
		default:
			ok = false
		}
		if !ok {
			t.Errorf("tick %s: got %d claims (%s by %s), %d successes, %d skipped runs, %d claims started before it by the server's clock, want 1 succeeded claim and 1 success (or 1 skipped claim and run while another run went), none early",
				c.at.Format(time.TimeOnly), c.claims, c.status, c.owner, c.successes, c.skippedRuns, c.earlyClaims)
		}
	}
	if least := int(window/time.Second) - 3; succeeded < least {
		t.Errorf("ticks succeeded: got %d of %d, want ≥ %d", succeeded, int(window/time.Second), least)
	}
	if t.Failed() {
		rows, err := rs.db.Query(`SELECT scheduled_at, owner, attempt, status, started_at, finished_at FROM job_claims WHERE job = 'skew' ORDER BY scheduled_at`)
		if err == nil {
			for rows.Next() {
				var at, st time.Time
				var fin sql.NullTime
				var owner, status string
				var attempt int
				_ = rows.Scan(&at, &owner, &attempt, &status, &st, &fin)
				t.Logf("claim %s %s attempt %d %s started %s finished %s", at.Format("15:04:05.000"), owner, attempt, status,
					st.Format("15:04:05.000"), fin.Time.Format("15:04:05.000"))
			}
			rows.Close()
		}
	}
	if n := rs.int(t, `SELECT count(*) FROM job_claims WHERE job = 'skew' AND started_at < scheduled_at`); n != 0 {
		t.Errorf("claims started before their tick by the server's clock: got %d, want 0", n)
	}
	ahead := rs.ws[1]
	if got := workertest.Sum(ahead.Scrape(t)["worker_job_runs_total"], map[string]string{"job_name": "skew", "result": "skipped"}); got != 0 {
		t.Errorf("runs the replica ahead recorded skipped: got %v, want 0 (it waits for the server's clock, and records nothing for the ticks it fires meanwhile)", got)
	}
	for i, w := range rs.ws {
		t.Logf("replica r%d (clock %s): %.0f ticks won", i, offsets[i],
			workertest.Sum(w.Scrape(t)["worker_job_claims_total"], map[string]string{"job_name": "skew", "result": "won"}))
	}
}
