package reliability_test

import (
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sqlworker/worker/internal/workertest"
)

// Ensure a config file replaced by a FIFO is refused by the reload, over
// SIGHUP and over /-/reload, at once and with worker_config_last_reload_successful
// 0, without wedging anything: the next reload of a valid file applies, and
// SIGTERM ends the process within its grace. Before, the reload blocked in
// open() for good, every later reload queued behind it, the gauge stayed 1,
// and the process did not exit after SIGTERM.
func TestReload_NotRegularFile(t *testing.T) {
	t.Parallel()
	w, path := reloadWorker(t, reloadLight, workertest.Options{Args: []string{"--web.enable-lifecycle"}})
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(path, 0o644); err != nil {
		t.Fatal(err)
	}
	hup(t, w, `msg="Config reload refused`, 1)
	if line := lastLine(w.Logs(), `msg="Config reload refused`); !strings.Contains(line, "not a regular file: a named pipe") || !strings.Contains(line, path) {
		t.Errorf("the refusal: want it to name %s and say it is a FIFO, got\n%s", path, line)
	}
	if got, want := gaugeOf(w.Scrape(t), "worker_config_last_reload_successful"), 0.0; got != want {
		t.Errorf("last_reload_successful after the FIFO: got %v, want %v", got, want)
	}
	start := time.Now()
	if got, want := mustDo(t, w.Client, "POST", w.URL("/-/reload")), http.StatusInternalServerError; got != want {
		t.Errorf("POST /-/reload of the FIFO: got %v, want %v", got, want)
	}
	t.Logf("POST /-/reload of the FIFO answered in %s", time.Since(start).Round(time.Millisecond))

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	writeConfig(t, path, reloadLight+`  - {name: b, schedule: "* * * * * *", sql: "SELECT 2"}
`)
	hup(t, w, `msg="Config reloaded"`, 1)
	w.WaitFor(t, "b running after the reload", 30*time.Second, func() bool { return runs(w.Scrape(t), "b", "success") > 0 })
	if got, want := gaugeOf(w.Scrape(t), "worker_config_last_reload_successful"), 1.0; got != want {
		t.Errorf("last_reload_successful after the valid file: got %v, want %v", got, want)
	}
	if code, took := w.Stop(t, 10*time.Second); code != 0 {
		t.Errorf("exit code: got %d, want 0", code)
	} else {
		t.Logf("exit %s after SIGTERM", took.Round(time.Millisecond))
	}
}

// lastLine returns the last line of logs that holds s.
func lastLine(logs, s string) string {
	var last string
	for line := range strings.SplitSeq(logs, "\n") {
		if strings.Contains(line, s) {
			last = line
		}
	}
	return last
}
