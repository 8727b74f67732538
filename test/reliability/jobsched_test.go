package reliability_test

import (
	"database/sql"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sqlworker/worker/internal/jobhistory"
	"github.com/sqlworker/worker/internal/workertest"
)

// strings1 returns the one-column rows of q.
func strings1(t *testing.T, d *sql.DB, q string, args ...any) []string {
	t.Helper()
	return workertest.Strings(t, d, q, args...)
}

// jobCounter returns a worker_job_* counter or histogram count of one job.
func jobCounter(w *workertest.Worker, t *testing.T, name, job string) float64 {
	t.Helper()
	mf := w.Scrape(t)[name]
	if strings.HasSuffix(name, "_count") {
		mf = w.Scrape(t)[strings.TrimSuffix(name, "_count")]
		for _, m := range mf.GetMetric() {
			if workertest.Matches(m, map[string]string{"job_name": job}) {
				return float64(m.GetHistogram().GetSampleCount())
			}
		}
		return 0
	}
	return workertest.Sum(mf, map[string]string{"job_name": job})
}

// stopWorker stops w and fails unless it exits 0.
func stopWorker(t *testing.T, w *workertest.Worker) {
	t.Helper()
	if code, _ := w.Stop(t, 60*time.Second); code != 0 {
		t.Fatalf("exit code: got %d, want 0\n%s", code, w.Logs())
	}
}

// Ensure catch_up against the built worker, from job_runs rows of an
// earlier process: an hourly job whose last tick was 5 hours ago runs none
// of the 5 missed ticks (skip), the newest (once), or the newest 3, oldest
// first (all, limit 3), each recorded with the missed tick's scheduled_at,
// the others counted in worker_job_ticks_skipped_total, and none in the
// start delay histogram.
func TestCatchUp_MissedTicks(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name    string
		policy  string // the job's settings
		run     int
		skipped int
	}{
		{"Skip", "catch_up: skip", 0, 5},
		{"Once", "catch_up: once", 1, 4},
		{"AllLimit3", "catch_up: all\n    catch_up_limit: 3", 3, 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := workertest.BuiltinsOff + fmt.Sprintf(`jobs:
  - name: hourly
    schedule: "0 0 * * * *"
    sql: SELECT 1
    %s
`, tt.policy)
			// The first process creates the database and runs nothing.
			w := StartWorker(t, workertest.Options{Config: cfg})
			stopWorker(t, w)
			if time.Until(time.Now().Truncate(time.Hour).Add(time.Hour)) < 10*time.Second {
				t.Skip("an hour boundary is about to pass: the missed ticks would be 6")
			}
			top := time.Now().Truncate(time.Hour)
			last := top.Add(-5 * time.Hour)
			d := workertest.OpenDB(t, w.DBPath, "_busy_timeout=5000")
			if err := jobhistory.InsertRuns(workertest.CtxTimeout(t, 10*time.Second), d, []jobhistory.RunRow{{
				Job: "hourly", ScheduledAt: last, StartedAt: last, EndedAt: last, Result: "success",
			}}); err != nil {
				t.Fatal(err)
			}

			w = StartWorker(t, workertest.Options{Config: cfg, DBPath: w.DBPath})
			w.WaitFor(t, "the missed ticks counted", 30*time.Second, func() bool {
				return jobCounter(w, t, "worker_job_ticks_skipped_total", "hourly") == float64(tt.skipped) &&
					jobCounter(w, t, "worker_job_runs_total", "hourly") == float64(tt.run)
			})
			if got := jobCounter(w, t, "worker_job_ticks_caught_up_total", "hourly"); got != float64(tt.run) {
				t.Errorf("worker_job_ticks_caught_up_total: got %v, want %d", got, tt.run)
			}
			if got := jobCounter(w, t, "worker_job_start_delay_seconds_count", "hourly"); got != 0 {
				t.Errorf("worker_job_start_delay_seconds_count: got %v, want 0 (caught-up runs are late on purpose)", got)
			}
			stopWorker(t, w)
			want := []string{jobhistory.FormatTime(last)}
			for i := tt.run - 1; i >= 0; i-- {
				want = append(want, jobhistory.FormatTime(top.Add(-time.Duration(i)*time.Hour)))
			}
			got := strings1(t, d, "SELECT scheduled_at FROM job_runs WHERE job = 'hourly' ORDER BY id")
			if strings.Join(got, ",") != strings.Join(want, ",") {
				t.Errorf("job_runs scheduled_at: got %v, want %v", got, want)
			}
		})
	}
}

// Ensure catch_up: all runs every tick of a real downtime: a job every
// second is stopped, ticks pass, and the next process runs each of them,
// so job_runs has a row for every second, none skipped.
func TestCatchUp_AllAfterDowntime(t *testing.T) {
	t.Parallel()
	cfg := workertest.BuiltinsOff + `jobs:
  - name: tick
    schedule: "* * * * * *"
    sql: SELECT 1
    catch_up: all
    catch_up_limit: 100
`
	w := StartWorker(t, workertest.Options{Config: cfg})
	d := workertest.OpenDB(t, w.DBPath, "mode=ro")
	w.WaitFor(t, "a run recorded", 30*time.Second, func() bool {
		return len(strings1(t, d, "SELECT id FROM job_runs WHERE job = 'tick'")) > 0
	})
	stopWorker(t, w)
	last, err := time.Parse(jobhistory.TimeFormat, strings1(t, d, "SELECT max(scheduled_at) FROM job_runs WHERE job = 'tick'")[0])
	if err != nil {
		t.Fatal(err)
	}
	// The downtime: wait for the clock to pass three ticks with no worker.
	time.Sleep(time.Until(last.Add(3*time.Second + 100*time.Millisecond)))

	w = StartWorker(t, workertest.Options{Config: cfg, DBPath: w.DBPath})
	var caughtUp float64
	w.WaitFor(t, "the missed ticks caught up", 30*time.Second, func() bool {
		caughtUp = jobCounter(w, t, "worker_job_ticks_caught_up_total", "tick")
		return caughtUp >= 3 && jobCounter(w, t, "worker_job_runs_total", "tick") >= caughtUp+1
	})
	if got := jobCounter(w, t, "worker_job_ticks_skipped_total", "tick"); got != 0 {
		t.Errorf("worker_job_ticks_skipped_total: got %v, want 0", got)
	}
	stopWorker(t, w)
	ticks := strings1(t, d, "SELECT scheduled_at FROM job_runs WHERE job = 'tick' AND scheduled_at > ? ORDER BY scheduled_at", jobhistory.FormatTime(last))
	for i, s := range ticks {
		at, err := time.Parse(jobhistory.TimeFormat, s)
		if err != nil {
			t.Fatal(err)
		}
		if want := last.Add(time.Duration(i+1) * time.Second); !at.Equal(want) {
			t.Fatalf("tick %d after the last one before the downtime (%v): got %v, want %v (every second, none missing)\n%v", i, last, at, want, ticks)
		}
	}
	t.Logf("%d ticks caught up after the downtime, %d rows after it", int(caughtUp), len(ticks))
}

// Ensure a job that fails with SQLITE_BUSY, because the test holds the
// write lock, is retried and then succeeds once the lock is let go: every
// attempt has its job_runs row with its attempt number, and each retry is
// counted in worker_job_retries_total.
func TestRetry_BusyThenSuccess(t *testing.T) {
	t.Parallel()
	cfg := `database:
  busy_timeout: 100ms
` + workertest.BuiltinsOff + `jobs:
  - name: write
    schedule: "* * * * * *"
    timeout: 5s
    retries: 3
    retry_backoff: 50ms
    sql: |
      CREATE TABLE IF NOT EXISTS ticks (at TEXT);
      INSERT INTO ticks VALUES (strftime('%Y-%m-%dT%H:%M:%fZ'));
`
	w := StartWorker(t, workertest.Options{Config: cfg})
	d := workertest.OpenDB(t, w.DBPath, "_txlock=immediate&_busy_timeout=10000")
	w.WaitFor(t, "a run recorded", 30*time.Second, func() bool {
		return len(strings1(t, d, "SELECT id FROM job_runs WHERE job = 'write'")) > 0
	})
	tx, err := d.Begin() // BEGIN IMMEDIATE: the write lock
	if err != nil {
		t.Fatal(err)
	}
	w.WaitFor(t, "a retry", 30*time.Second, func() bool {
		return jobCounter(w, t, "worker_job_retries_total", "write") >= 1
	})
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	q := `SELECT f.scheduled_at FROM job_runs f JOIN job_runs s ON s.job = f.job AND s.scheduled_at = f.scheduled_at
		WHERE f.job = 'write' AND f.attempt = 1 AND f.result = 'failure' AND f.error = 'database is locked'
		AND s.attempt > 1 AND s.result = 'success'`
	w.WaitFor(t, "a tick whose first attempt failed and whose retry succeeded", 30*time.Second, func() bool {
		return len(strings1(t, d, q)) > 0
	})
	retries := jobCounter(w, t, "worker_job_retries_total", "write")
	givenUp := jobCounter(w, t, "worker_job_retries_given_up_total", "write")
	stopWorker(t, w)
	// Each tick's attempts are 1, 2, ... with no gap, and every retry
	// counted before the stop has its row.
	if bad := strings1(t, d, `SELECT scheduled_at FROM job_runs WHERE job = 'write'
		GROUP BY scheduled_at HAVING max(attempt) != count(*) OR min(attempt) != 1`); len(bad) > 0 {
		t.Errorf("ticks whose attempts are not 1..n: %v", bad)
	}
	attempts := len(strings1(t, d, "SELECT id FROM job_runs WHERE job = 'write'"))
	ticks := len(strings1(t, d, "SELECT DISTINCT scheduled_at FROM job_runs WHERE job = 'write'"))
	if float64(attempts-ticks) < retries {
		t.Errorf("attempts beyond the first of each tick: got %d rows over %d ticks, want ≥ %v (worker_job_retries_total)", attempts, ticks, retries)
	}
	t.Logf("%d attempts over %d ticks, %v retries, %v given up", attempts, ticks, retries, givenUp)
}

// Ensure a constraint violation is not retried: it would fail the same way.
func TestRetry_ConstraintNotRetried(t *testing.T) {
	t.Parallel()
	cfg := workertest.BuiltinsOff + `jobs:
  - name: dup
    schedule: "* * * * * *"
    retries: 3
    retry_backoff: 10ms
    sql: |
      CREATE TABLE IF NOT EXISTS once (x UNIQUE);
      INSERT INTO once VALUES (1);
`
	w := StartWorker(t, workertest.Options{Config: cfg})
	w.WaitFor(t, "two failures", 30*time.Second, func() bool {
		return runs(w.Scrape(t), "dup", "failure") >= 2
	})
	if got := jobCounter(w, t, "worker_job_retries_total", "dup"); got != 0 {
		t.Errorf("worker_job_retries_total: got %v, want 0", got)
	}
	stopWorker(t, w)
	d := workertest.OpenDB(t, w.DBPath, "mode=ro")
	if got := strings1(t, d, "SELECT DISTINCT attempt || ' ' || result || ' ' || error FROM job_runs WHERE job = 'dup' AND result = 'failure'"); len(got) != 1 || got[0] != "1 failure UNIQUE constraint failed: once.x" {
		t.Errorf("failed rows: got %q, want only [1 failure UNIQUE constraint failed: once.x]", got)
	}
}

// Ensure jitter against the built worker: each run of a job every second
// with jitter: 400ms starts after its tick plus a delay in [0, 400ms), and
// the delay is recorded in job_runs.jitter_ms and worker_job_jitter_seconds.
func TestJitter_Recorded(t *testing.T) {
	t.Parallel()
	const n = 5
	cfg := workertest.BuiltinsOff + `jobs:
  - name: spread
    schedule: "* * * * * *"
    sql: SELECT 1
    jitter: 400ms
`
	w := StartWorker(t, workertest.Options{Config: cfg})
	d := workertest.OpenDB(t, w.DBPath, "mode=ro")
	w.WaitFor(t, fmt.Sprintf("%d runs recorded", n), 30*time.Second, func() bool {
		return len(strings1(t, d, "SELECT id FROM job_runs WHERE job = 'spread'")) >= n
	})
	jitters := jobCounter(w, t, "worker_job_jitter_seconds_count", "spread")
	stopWorker(t, w)
	if jitters < n {
		t.Errorf("worker_job_jitter_seconds_count: got %v, want ≥ %d", jitters, n)
	}
	bad := strings1(t, d, `SELECT scheduled_at || ' ' || started_at || ' ' || jitter_ms FROM job_runs WHERE job = 'spread'
		AND (jitter_ms < 0 OR jitter_ms >= 400
			OR round((julianday(started_at) - julianday(scheduled_at)) * 86400000) < jitter_ms)`)
	if len(bad) > 0 {
		t.Errorf("runs outside [tick, tick + jitter) or started before tick + jitter: %v", bad)
	}
	if got := strings1(t, d, "SELECT count(DISTINCT jitter_ms) FROM job_runs WHERE job = 'spread'"); got[0] == "1" {
		t.Errorf("distinct jitters: got 1, want random delays")
	}
}
