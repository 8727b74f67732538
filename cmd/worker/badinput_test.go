package main_test

import (
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func newCmd(args ...string) *exec.Cmd { return exec.Command(workerBin, args...) }

// Ensure bad input exits non-zero with one line naming what is wrong, and
// never a panic or a stack trace.
func TestWorker_BadInput(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "plainfile")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	held := MustStartWorker(t, "")

	for _, tc := range []struct {
		name   string
		config string // written to a file and passed with --config.file when set
		args   []string
		code   int
		want   string // the last line of stderr
	}{
		{name: "InvalidCronSpec", config: "jobs:\n  - {name: a, schedule: '61 * * * *', sql: 'SELECT 1'}\n", code: 2,
			want: `worker: config file CONFIG: jobs[0].schedule: invalid schedule "61 * * * *": end of range (61) above maximum (59): 61`},
		{name: "UnknownKey", config: "databse:\n  path: x.db\n", code: 2,
			want: `worker: config file CONFIG: databse: unknown field, want one of database, scheduler, history, builtin, jobs`},
		{name: "DuplicateJobName", config: "jobs:\n  - {name: a, schedule: '@hourly', sql: 'SELECT 1'}\n  - {name: a, schedule: '@daily', sql: 'SELECT 2'}\n", code: 2,
			want: `worker: config file CONFIG: jobs[1].name: duplicate job name "a" (also jobs[0])`},
		{name: "EmptySQL", config: "jobs:\n  - {name: a, schedule: '@hourly', sql: '  '}\n", code: 2,
			want: `worker: config file CONFIG: jobs[0].sql: must not be empty`},
		{name: "NegativeTimeout", config: "jobs:\n  - {name: a, schedule: '@hourly', sql: 'SELECT 1', timeout: -5s}\n", code: 2,
			want: `worker: config file CONFIG: jobs[0].timeout: must be positive, got -5s`},
		{name: "MissingConfigFile", args: []string{"--config.file", filepath.Join(dir, "nope.yml")}, code: 2,
			want: "worker: --config.file " + filepath.Join(dir, "nope.yml") + ": cannot read: no such file or directory"},
		{name: "UnknownFlag", args: []string{"--web.listen-addr", ":1"}, code: 2,
			want: `worker: unknown long flag '--web.listen-addr'`},
		{name: "BadLogLevel", args: []string{"--log.level", "loud"}, code: 2,
			want: `worker: unrecognized log level loud`},
		{name: "BadTelemetryPath", args: []string{"--web.telemetry-path", "metrics"}, code: 2,
			want: `worker: --web.telemetry-path: must start with / and name a path, got "metrics"`},
		{name: "NegativeMaxRequests", args: []string{"--web.max-requests=-1"}, code: 2,
			want: `worker: --web.max-requests: must be 0 (no limit) or positive, got -1`},
		{name: "MissingWebConfig", args: []string{"--web.config.file", filepath.Join(dir, "web.yml")}, code: 2,
			want: "worker: --web.config.file: stat " + filepath.Join(dir, "web.yml") + ": no such file or directory"},
		{name: "UnwritableDBDirectory", args: []string{"--db.path", filepath.Join(file, "worker.db")}, code: 1,
			want: "worker: cannot open database " + filepath.Join(file, "worker.db") + ": " + file + " is not a directory"},
		{name: "MissingDBDirectory", args: []string{"--db.path", filepath.Join(dir, "no", "worker.db")}, code: 1,
			want: "worker: cannot open database " + filepath.Join(dir, "no", "worker.db") + ": directory " + filepath.Join(dir, "no") + ": no such file or directory"},
		{name: "PortInUse", args: []string{"--web.listen-address", busy.Addr().String()}, code: 1,
			want: "worker: --web.listen-address " + busy.Addr().String() + ": bind: address already in use"},
		{name: "DatabaseHeldByAnotherWorker", args: []string{"--db.path", held.DBPath}, code: 1,
			want: "worker: database is in use by another worker: " + held.DBPath + " is locked (pid " + strconv.Itoa(held.Cmd.Process.Pid) + ")"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			caseDir := t.TempDir()
			args := tc.args
			if !hasFlag(args, "--db.path") {
				args = append(args, "--db.path", filepath.Join(caseDir, "worker.db"))
			}
			if !hasFlag(args, "--web.listen-address") {
				args = append(args, "--web.listen-address", "127.0.0.1:0")
			}
			want := tc.want
			if tc.config != "" {
				path := filepath.Join(caseDir, "worker.yml")
				if err := os.WriteFile(path, []byte(tc.config), 0o644); err != nil {
					t.Fatal(err)
				}
				args = append(args, "--config.file", path)
				want = strings.ReplaceAll(want, "CONFIG", path)
			}
			out, err := runWorker(t, args...)
			var ee *exec.ExitError
			if !errors.As(err, &ee) {
				t.Fatalf("exit: got %v, want exit code %d\n%s", err, tc.code, out)
			}
			if got := ee.ExitCode(); got != tc.code {
				t.Errorf("exit code: got %d, want %d", got, tc.code)
			}
			lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
			if got := lines[len(lines)-1]; got != want {
				t.Errorf("last line:\n got %s\nwant %s", got, want)
			}
			for _, bad := range []string{"panic:", "goroutine "} {
				if strings.Contains(out, bad) {
					t.Errorf("output contains %q:\n%s", bad, out)
				}
			}
		})
	}
}

func hasFlag(args []string, flag string) bool {
	for _, a := range args {
		if a == flag || strings.HasPrefix(a, flag+"=") {
			return true
		}
	}
	return false
}
