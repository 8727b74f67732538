package sqlcount_test

import (
	"database/sql"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sqlworker/worker/sqlcount"
)

// Ensure ProcessHandles counts handles of any driver, a plain go-sqlite3
// one that no wrapper saw included, and stops counting each at Close.
func TestProcessHandles(t *testing.T) {
	before := sqlcount.ProcessHandles()
	dsn := sqliteDSN(t)
	var dbs []*sql.DB
	for i := range 3 {
		dbs = append(dbs, sql.OpenDB(sqliteConnector{dsn: dsn}))
		waitProcessHandles(t, before+i+1)
	}
	for _, db := range dbs {
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
	}
	// Close returns once the opener goroutine was told to stop, not once it
	// has; the count falls back as they exit.
	waitProcessHandles(t, before)
}

// waitProcessHandles waits until ProcessHandles is want: an opener
// goroutine counts from its first run, and stops counting at its exit,
// both soon after the open and the Close.
func waitProcessHandles(t *testing.T, want int) {
	t.Helper()
	for i := 0; ; i++ {
		got := sqlcount.ProcessHandles()
		if got == want {
			return
		}
		if i == 10000 {
			t.Fatalf("ProcessHandles: got %d, want %d", got, want)
		}
		runtime.Gosched()
	}
}

// Ensure the ProcessCollector exports the count as
// worker_db_process_handles_open and passes the linter.
func TestProcessCollector(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(sqlcount.NewProcessCollector())
	n := sqlcount.ProcessHandles() + 1
	db := sql.OpenDB(sqliteConnector{dsn: sqliteDSN(t)})
	defer db.Close()
	waitProcessHandles(t, n)
	want := "# HELP worker_db_process_handles_open sql.DB handles open in the process on any driver, counted or not: database/sql's connectionOpener goroutines.\n# TYPE worker_db_process_handles_open gauge\nworker_db_process_handles_open " + itoa(n) + "\n"
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
	if probs, err := testutil.GatherAndLint(reg); err != nil || len(probs) > 0 {
		t.Errorf("lint: %v %v", probs, err)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
