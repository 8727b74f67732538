package reliability_test

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// configRun is what the worker did with a config it was given.
type configRun struct {
	code   int           // exit status
	stderr string        // all of it
	took   time.Duration // from start to exit
	dbPath string        // the --db.path it was given
}

// runConfig runs the built worker on config (written to a file) with args,
// prefixed by prefix (such as prlimit), and waits at most 60 s for it to
// exit on its own.
func runConfig(t *testing.T, config string, prefix []string, args ...string) configRun {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "worker.yml")
	if err := os.WriteFile(path, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	r := configRun{dbPath: filepath.Join(dir, "worker.db")}
	argv := append(append([]string(nil), prefix...), workerBin, "--config.file", path,
		"--db.path", r.dbPath, "--web.listen-address", "127.0.0.1:0")
	argv = append(argv, args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("worker did not exit within 60 s on the config\n%s", tail(stderr.String(), 4<<10))
	}
	r.took = time.Since(start)
	r.stderr = strings.ReplaceAll(stderr.String(), path, "CONFIG")
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		t.Fatal(err)
	}
	return r
}

// wantRefused checks that the worker exited 2 with exactly the one line
// want on stderr, no stack trace, and created no database.
func wantRefused(t *testing.T, r configRun, want string) {
	t.Helper()
	if r.code != 2 {
		t.Errorf("exit code: got %d, want 2\n%s", r.code, tail(r.stderr, 4<<10))
	}
	if got := strings.TrimSuffix(r.stderr, "\n"); got != want {
		t.Errorf("stderr:\n got %q\nwant %q", tail(got, 4<<10), want)
	}
	for _, bad := range []string{"panic:", "fatal error:", "goroutine "} {
		if strings.Contains(r.stderr, bad) {
			t.Errorf("stderr contains %q", bad)
		}
	}
	if _, err := os.Stat(r.dbPath); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("database %s: got %v, want it not created", r.dbPath, err)
	}
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}

// refusedConfig is a config the worker must refuse, and the line it says.
type refusedConfig struct {
	name, config, want string
}

// checkRefused runs each config with --config.check and as a start, and
// checks that both refuse it with the same line.
func checkRefused(t *testing.T, tests []refusedConfig) {
	t.Helper()
	for _, tt := range tests {
		for _, mode := range []struct {
			name string
			args []string
		}{{"Check", []string{"--config.check"}}, {"Start", nil}} {
			t.Run(tt.name+"/"+mode.name, func(t *testing.T) {
				r := runConfig(t, tt.config, nil, mode.args...)
				wantRefused(t, r, "worker: config file CONFIG: "+tt.want)
			})
		}
	}
}

// Ensure values the worker cannot honour are refused at config check and
// start-up, naming the field (issue 12, item 7): a busy_timeout below the
// driver's millisecond (1ns became _busy_timeout=0, no waiting at all), and a
// schedule that no date matches (next run 0001-01-01, the job never ran).
func TestConfig_NotHonoured(t *testing.T) {
	t.Parallel()
	checkRefused(t, []refusedConfig{
		{"BusyTimeoutNanosecond", "database:\n  busy_timeout: 1ns\n",
			"database.busy_timeout: must be at least 1ms, got 1ns"},
		{"BusyTimeoutFraction", "database:\n  busy_timeout: 2.5ms\n",
			"database.busy_timeout: must be a whole number of milliseconds, got 2.5ms"},
		{"BusyTimeoutOverflow", "database:\n  busy_timeout: 1000h\n",
			"database.busy_timeout: must be at most 596h31m23.647s (SQLite's busy_timeout is a 32-bit count of milliseconds), got 1000h0m0s"},
		{"RetentionNanosecond", "history:\n  retention: 1ns\n",
			"history.retention: must be at least 1ms, got 1ns"},
		{"February30", "jobs:\n  - {name: a, schedule: '0 0 30 2 *', sql: SELECT 1}\n",
			`jobs[0].schedule: "0 0 30 2 *" never fires`},
		{"BuiltinApril31", "builtin:\n  optimize: {schedule: '0 0 3 31 4 *'}\n",
			`builtin.optimize.schedule: "0 0 3 31 4 *" never fires`},
	})
}
