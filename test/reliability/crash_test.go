package reliability_test

import (
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/sqlworker/worker/internal/workertest"
)

// Defaults of the crash test; `make crash` raises the kills.
const (
	DefaultKills     = 20
	crashBatch       = 2000 // rows each run of a writing job inserts, in one transaction
	crashMinKillWait = 100 * time.Millisecond
	crashMaxKillWait = 2500 * time.Millisecond
)

// crashConfig runs three write-heavy jobs every second, each inserting
// crashBatch rows in one transaction, and checkpoints every second, so that
// a kill lands in a write, a commit or a checkpoint.
var crashConfig = func() string {
	c := `
history:
  retention: 8760h
builtin:
  heartbeat: {schedule: "@every 1s"}
  wal_checkpoint: {schedule: "@every 1s"}
jobs:
`
	for _, name := range []string{"ledger_a", "ledger_b", "ledger_c"} {
		c += `  - name: ` + name + `
    schedule: "* * * * * *"
    timeout: 30s
    sql: |
      CREATE TABLE IF NOT EXISTS ledger (job TEXT NOT NULL, n INTEGER NOT NULL, payload BLOB NOT NULL);
      INSERT INTO ledger (job, n, payload)
        WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ` + strconv.Itoa(crashBatch) + `)
        SELECT '` + name + `', x, randomblob(64) FROM c;
`
	}
	return c
}()

// envInt returns the integer in the environment variable name, or def.
func envInt(t *testing.T, name string, def int64) int64 {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		t.Fatalf("%s: want an integer, got %q", name, v)
	}
	return n
}

// historyRow is a finished run as job_runs recorded it.
type historyRow struct{ job, scheduledAt, startedAt, endedAt, result, err string }

// Ensure SIGKILL at random moments never loses a run the history recorded as
// finished and never corrupts the database: after each kill, PRAGMA
// integrity_check is ok, every run read from job_runs before the kill is
// still there unchanged, and every writing job's rows come in whole
// transactions. RELIABILITY_SEED replays a sequence of kill times,
// RELIABILITY_KILLS sets how many (default 20).
func TestCrash_SIGKILL(t *testing.T) {
	t.Parallel()
	seed := envInt(t, "RELIABILITY_SEED", time.Now().UnixNano())
	kills := int(envInt(t, "RELIABILITY_KILLS", DefaultKills))
	t.Logf("seed %d: replay with RELIABILITY_SEED=%d RELIABILITY_KILLS=%d", seed, seed, kills)
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	dbPath := t.TempDir() + "/worker.db"

	seen := make(map[int64]historyRow) // every run read before some kill
	var checked, maxRows int
	start := time.Now()
	for kill := 1; kill <= kills; kill++ {
		w := StartWorker(t, workertest.Options{Config: crashConfig, DBPath: dbPath})
		wait := crashMinKillWait + time.Duration(rng.Int64N(int64(crashMaxKillWait-crashMinKillWait)))
		time.Sleep(wait) // the random moment is the point: not a wait for a condition

		// What the history says is finished, read through another
		// connection just before the kill.
		before := readHistory(t, dbPath)
		w.Kill(t)
		for id, r := range before {
			seen[id] = r
		}

		after := readHistory(t, dbPath)
		for id, want := range seen {
			got, ok := after[id]
			switch {
			case !ok:
				t.Fatalf("kill %d (seed %d): run %d (%v) recorded before the kill is gone", kill, seed, id, want)
			case got != want:
				t.Fatalf("kill %d (seed %d): run %d: got %v, want %v", kill, seed, id, got, want)
			}
		}
		checked += len(seen)
		maxRows = max(maxRows, len(after))
		d := workertest.OpenDB(t, dbPath, "_busy_timeout=5000")
		if got := integrityCheck(t, d); got != "ok" {
			t.Fatalf("kill %d (seed %d): integrity_check: got %q, want ok", kill, seed, got)
		}
		var torn int
		err := d.QueryRow(`SELECT count(*) FROM (SELECT job FROM ledger GROUP BY job HAVING count(*) % ?)`, crashBatch).Scan(&torn)
		if err != nil && err.Error() != "no such table: ledger" {
			t.Fatal(err)
		}
		if torn != 0 {
			t.Fatalf("kill %d (seed %d): %d jobs have ledger rows that are not whole transactions of %d", kill, seed, torn, crashBatch)
		}
		d.Close()
	}

	// A last clean run, stopped by SIGTERM, leaves a checked database.
	w := StartWorker(t, workertest.Options{Config: crashConfig, DBPath: dbPath})
	w.WaitFor(t, "a run after the last restart", 30*time.Second, func() bool {
		return runs(w.Scrape(t), "ledger_a", "success") >= 1
	})
	if code, _ := w.Stop(t, 60*time.Second); code != 0 {
		t.Fatalf("exit code after the kills: got %d, want 0", code)
	}
	d := workertest.OpenDB(t, dbPath, "mode=ro")
	if got := integrityCheck(t, d); got != "ok" {
		t.Fatalf("integrity_check at the end: got %q, want ok", got)
	}
	var finished, ledgerRows int
	if err := d.QueryRow("SELECT count(*) FROM job_runs").Scan(&finished); err != nil {
		t.Fatal(err)
	}
	if err := d.QueryRow("SELECT count(*) FROM ledger").Scan(&ledgerRows); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d SIGKILLs survived in %s (seed %d): integrity_check ok after each; %d distinct finished runs read before a kill, %d run-checks in all, none lost; %d runs and %d ledger rows (%d-row transactions, none torn) at the end",
		kills, time.Since(start).Round(time.Second), seed, len(seen), checked, finished, ledgerRows, crashBatch)
}

// readHistory returns job_runs by id, read through a connection of its own.
func readHistory(t *testing.T, path string) map[int64]historyRow {
	t.Helper()
	d := workertest.OpenDB(t, path, "_busy_timeout=5000")
	defer d.Close()
	rows, err := d.QueryContext(workertest.CtxTimeout(t, 30*time.Second),
		"SELECT id, job, scheduled_at, started_at, ended_at, result, error FROM job_runs")
	if err != nil {
		if err.Error() == "no such table: job_runs" {
			return nil
		}
		t.Fatal(err)
	}
	defer rows.Close()
	out := make(map[int64]historyRow)
	for rows.Next() {
		var id int64
		var r historyRow
		if err := rows.Scan(&id, &r.job, &r.scheduledAt, &r.startedAt, &r.endedAt, &r.result, &r.err); err != nil {
			t.Fatal(err)
		}
		out[id] = r
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
