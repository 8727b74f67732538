package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-yaml"
	"go.uber.org/goleak"

	"github.com/sqlworker/worker/internal/schedule"
	"github.com/sqlworker/worker/internal/sqlstmt"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// wantJob is what a test expects of a Job; Schedule is compared with
// schedule.Parse(Spec).
type wantJob struct {
	Name    string
	Builtin bool
	Spec    string
	Timeout time.Duration
	Enabled bool
	SQL     string
}

var defaultJobs = []wantJob{
	{Name: "heartbeat", Builtin: true, Spec: "@every 10s", Timeout: 5 * time.Second, Enabled: true},
	{Name: "wal_checkpoint", Builtin: true, Spec: "@every 5m", Timeout: time.Minute, Enabled: true},
	{Name: "optimize", Builtin: true, Spec: "@hourly", Timeout: 5 * time.Minute, Enabled: true},
	{Name: "quick_check", Builtin: true, Spec: "@every 15m", Timeout: 5 * time.Minute, Enabled: true},
	{Name: "history_prune", Builtin: true, Spec: "@hourly", Timeout: time.Minute, Enabled: true},
}

func checkJobs(t *testing.T, got []Job, want []wantJob) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d jobs, want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		g := got[i]
		gw := wantJob{Name: g.Name, Builtin: g.Builtin, Spec: g.Spec, Timeout: g.Timeout, Enabled: g.Enabled, SQL: g.SQL}
		if gw != w {
			t.Errorf("job %d: got %+v, want %+v", i, gw, w)
		}
		p, err := schedule.Parse(w.Spec)
		if err != nil {
			t.Fatalf("schedule.Parse(%q): %v", w.Spec, err)
		}
		if !reflect.DeepEqual(g.Schedule, p) {
			t.Errorf("job %s: got Schedule %#v, want %#v", g.Name, g.Schedule, p)
		}
	}
}

func mustParse(t *testing.T, doc string) *Config {
	t.Helper()
	c, err := Parse([]byte(doc))
	if err != nil {
		t.Fatalf("Parse: got error %q, want nil; document:\n%s", err, doc)
	}
	return c
}

func TestParse_Defaults(t *testing.T) {
	for name, doc := range map[string]string{
		"Nil":           "",
		"Blank":         "\n\n  \n",
		"Comment":       "# all defaults\n",
		"DocumentMark":  "---\n",
		"Null":          "~\n",
		"EmptySection":  "database:\nbuiltin:\njobs: []\n",
		"ByteOrderMark": "\xef\xbb\xbf# saved by an editor that writes a BOM\n",
	} {
		t.Run(name, func(t *testing.T) {
			c := mustParse(t, doc)
			if c.DBPath != "worker.db" {
				t.Errorf("DBPath: got %q, want %q", c.DBPath, "worker.db")
			}
			if c.MaxOpenConns != 4 {
				t.Errorf("MaxOpenConns: got %d, want 4", c.MaxOpenConns)
			}
			if c.BusyTimeout != 5*time.Second {
				t.Errorf("BusyTimeout: got %s, want 5s", c.BusyTimeout)
			}
			if c.Location != time.Local {
				t.Errorf("Location: got %v, want Local", c.Location)
			}
			if c.ShutdownGrace != 30*time.Second {
				t.Errorf("ShutdownGrace: got %s, want 30s", c.ShutdownGrace)
			}
			if c.HistoryRetention != 7*24*time.Hour {
				t.Errorf("HistoryRetention: got %s, want 168h", c.HistoryRetention)
			}
			checkJobs(t, c.Jobs, defaultJobs)
			if got := len(c.EnabledJobs()); got != len(BuiltinNames) {
				t.Errorf("EnabledJobs: got %d, want %d", got, len(BuiltinNames))
			}
		})
	}
}

func TestDefault_EqualsEmptyDocument(t *testing.T) {
	want, err := Parse(nil)
	if err != nil {
		t.Fatalf("Parse(nil): %v", err)
	}
	if got := Default(); !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

func TestParse_Overrides(t *testing.T) {
	t.Run("Settings", func(t *testing.T) {
		c := mustParse(t, `
database:
  path: /var/lib/worker/app.db
  max_open_conns: 8
  busy_timeout: 2s
  max_page_count: 262144
scheduler:
  timezone: America/New_York
  shutdown_grace: 10s
history:
  retention: 72h
`)
		ny, err := time.LoadLocation("America/New_York")
		if err != nil {
			t.Fatal(err)
		}
		if c.DBPath != "/var/lib/worker/app.db" {
			t.Errorf("DBPath: got %q, want %q", c.DBPath, "/var/lib/worker/app.db")
		}
		if c.MaxOpenConns != 8 {
			t.Errorf("MaxOpenConns: got %d, want 8", c.MaxOpenConns)
		}
		if c.BusyTimeout != 2*time.Second {
			t.Errorf("BusyTimeout: got %s, want 2s", c.BusyTimeout)
		}
		if got, want := c.MaxPageCount, 262144; got != want {
			t.Errorf("MaxPageCount: got %d, want %d", got, want)
		}
		if c.Location.String() != ny.String() {
			t.Errorf("Location: got %v, want %v", c.Location, ny)
		}
		if c.ShutdownGrace != 10*time.Second {
			t.Errorf("ShutdownGrace: got %s, want 10s", c.ShutdownGrace)
		}
		if c.HistoryRetention != 72*time.Hour {
			t.Errorf("HistoryRetention: got %s, want 72h", c.HistoryRetention)
		}
		checkJobs(t, c.Jobs, defaultJobs)
	})
	t.Run("PartialBuiltin", func(t *testing.T) {
		c := mustParse(t, `
builtin:
  heartbeat: {schedule: "@every 30s"}   # the timeout stays 5s
  quick_check:
    timeout: 1m                           # the schedule stays @every 15m
  history_prune: {name: history_prune}    # its own name is allowed
  wal_checkpoint:                         # null: all defaults
`)
		want := append([]wantJob(nil), defaultJobs...)
		want[0].Spec = "@every 30s"
		want[3].Timeout = time.Minute
		checkJobs(t, c.Jobs, want)
	})
	t.Run("DisabledBuiltin", func(t *testing.T) {
		c := mustParse(t, "builtin:\n  optimize: {enabled: false}\n  quick_check: {enabled: false, schedule: '@daily'}\n")
		want := append([]wantJob(nil), defaultJobs...)
		want[2].Enabled = false
		want[3].Enabled = false
		want[3].Spec = "@daily"
		checkJobs(t, c.Jobs, want)
		var names []string
		for _, j := range c.EnabledJobs() {
			names = append(names, j.Name)
		}
		if got, want := strings.Join(names, ","), "heartbeat,wal_checkpoint,history_prune"; got != want {
			t.Errorf("EnabledJobs: got %s, want %s", got, want)
		}
	})
	t.Run("UserJobs", func(t *testing.T) {
		c := mustParse(t, `
jobs:
  - name: expire_sessions
    schedule: "*/5 * * * *"
    sql: DELETE FROM sessions WHERE expires_at < unixepoch();
  - name: rollup_2
    schedule: "CRON_TZ=UTC 0 30 2 * * *"
    timeout: 10m
    enabled: true
    sql: |
      INSERT INTO daily SELECT day, count(*) FROM events GROUP BY day;
      DELETE FROM events;
  - name: paused
    schedule: "@every 1m"
    enabled: false
    sql: SELECT 1
`)
		want := append(append([]wantJob(nil), defaultJobs...),
			wantJob{Name: "expire_sessions", Spec: "*/5 * * * *", Timeout: time.Minute, Enabled: true,
				SQL: "DELETE FROM sessions WHERE expires_at < unixepoch();"},
			wantJob{Name: "rollup_2", Spec: "CRON_TZ=UTC 0 30 2 * * *", Timeout: 10 * time.Minute, Enabled: true,
				SQL: "INSERT INTO daily SELECT day, count(*) FROM events GROUP BY day;\nDELETE FROM events;\n"},
			wantJob{Name: "paused", Spec: "@every 1m", Timeout: time.Minute, Enabled: false, SQL: "SELECT 1"},
		)
		checkJobs(t, c.Jobs, want)
		if got := len(c.EnabledJobs()); got != len(BuiltinNames)+2 {
			t.Errorf("EnabledJobs: got %d, want %d", got, len(BuiltinNames)+2)
		}
	})
	t.Run("AnchorAndAlias", func(t *testing.T) {
		c := mustParse(t, `
jobs:
  - {name: a, schedule: &every "@every 1m", timeout: &short 5s, sql: &q SELECT 1}
  - {name: b, schedule: *every, timeout: *short, sql: *q}
`)
		if j := c.Jobs[6]; j.Spec != "@every 1m" || j.Timeout != 5*time.Second || j.SQL != "SELECT 1" {
			t.Errorf("job b: got %+v, want the values of job a", j)
		}
	})
	t.Run("MaxJobs", func(t *testing.T) {
		c := mustParse(t, manyJobs(MaxJobs))
		if got := len(c.Jobs); got != len(BuiltinNames)+MaxJobs {
			t.Errorf("got %d jobs, want %d", got, len(BuiltinNames)+MaxJobs)
		}
	})
	t.Run("DurationsAtTheirLimits", func(t *testing.T) {
		c := mustParse(t, "database:\n  busy_timeout: 1ms\nhistory:\n  retention: 0s\nscheduler:\n  shutdown_grace: 1ns\n"+
			job("timeout: 1500us"))
		if c.BusyTimeout != time.Millisecond {
			t.Errorf("BusyTimeout: got %s, want 1ms", c.BusyTimeout)
		}
		if c.HistoryRetention != 0 {
			t.Errorf("HistoryRetention: got %s, want 0s", c.HistoryRetention)
		}
		// Go timers honour any positive duration: these are not refused.
		if c.ShutdownGrace != time.Nanosecond {
			t.Errorf("ShutdownGrace: got %s, want 1ns", c.ShutdownGrace)
		}
		if got := c.Jobs[len(c.Jobs)-1].Timeout; got != 1500*time.Microsecond {
			t.Errorf("job timeout: got %s, want 1.5ms", got)
		}
		c = mustParse(t, "database:\n  busy_timeout: 596h31m23.647s\n")
		if c.BusyTimeout != MaxBusyTimeout {
			t.Errorf("BusyTimeout: got %s, want %s", c.BusyTimeout, MaxBusyTimeout)
		}
	})
	t.Run("QuotedKeysAndCRLF", func(t *testing.T) {
		c := mustParse(t, "\"database\":\r\n  'path': x.db\r\n")
		if c.DBPath != "x.db" {
			t.Errorf("DBPath: got %q, want %q", c.DBPath, "x.db")
		}
	})
}

func manyJobs(n int) string {
	var b strings.Builder
	b.WriteString("jobs:\n")
	for i := range n {
		fmt.Fprintf(&b, "  - {name: job_%d, schedule: '@hourly', sql: 'SELECT %d'}\n", i, i)
	}
	return b.String()
}

// job is a valid user job with one field replaced or added.
func job(field string) string {
	fields := map[string]string{"name": "name: nightly", "schedule": "schedule: '@daily'", "sql": "sql: SELECT 1"}
	key, _, _ := strings.Cut(field, ":")
	fields[key] = field
	var parts []string
	for _, k := range []string{"name", "schedule", "sql"} {
		if v := fields[k]; v != "" {
			parts = append(parts, v)
		}
		delete(fields, k)
	}
	for _, v := range fields {
		parts = append(parts, v)
	}
	return "jobs:\n  - {" + strings.Join(parts, ", ") + "}\n"
}

func TestParse_Errors(t *testing.T) {
	tests := []struct {
		name  string
		doc   string
		field string // the message starts with "<field>: "
		want  string
	}{
		// Schedules.
		{"InvalidCron", job("schedule: 'every day'"), "jobs[0].schedule",
			`jobs[0].schedule: invalid schedule "every day": expected 5 to 6 fields, found 2: [every day]`},
		{"SevenFields", job("schedule: '* * * * * * *'"), "jobs[0].schedule",
			`jobs[0].schedule: invalid schedule "* * * * * * *": expected 5 to 6 fields, found 7: [* * * * * * *]`},
		{"MinuteOutOfRange", job("schedule: '61 * * * *'"), "jobs[0].schedule",
			`jobs[0].schedule: invalid schedule "61 * * * *": end of range (61) above maximum (59): 61`},
		{"EverySubSecond", job("schedule: '@every 500ms'"), "jobs[0].schedule",
			`jobs[0].schedule: invalid schedule "@every 500ms": @every: interval must be at least 1s, got 500ms`},
		{"EveryNegative", job("schedule: '@every -5s'"), "jobs[0].schedule",
			`jobs[0].schedule: invalid schedule "@every -5s": @every: interval must be at least 1s, got -5s`},
		{"ScheduleBadZone", job("schedule: 'CRON_TZ=Mars/Olympus 0 9 * * *'"), "jobs[0].schedule",
			`jobs[0].schedule: invalid schedule "CRON_TZ=Mars/Olympus 0 9 * * *": CRON_TZ: unknown time zone "Mars/Olympus"`},
		{"MissingSchedule", "jobs:\n  - {name: nightly, sql: SELECT 1}\n", "jobs[0].schedule",
			"jobs[0].schedule: must not be empty"},
		{"NeverFires", job("schedule: '0 0 30 2 *'"), "jobs[0].schedule", `jobs[0].schedule: "0 0 30 2 *" never fires`},
		{"NeverFiresSeconds", job("schedule: '0 0 0 31 4 *'"), "jobs[0].schedule", `jobs[0].schedule: "0 0 0 31 4 *" never fires`},
		{"BuiltinNeverFires", "builtin:\n  quick_check: {schedule: 'CRON_TZ=UTC 0 0 31 11 *'}\n", "builtin.quick_check.schedule",
			`builtin.quick_check.schedule: "CRON_TZ=UTC 0 0 31 11 *" never fires`},
		{"BuiltinBadSchedule", "builtin:\n  optimize: {schedule: hourly}\n", "builtin.optimize.schedule",
			`builtin.optimize.schedule: invalid schedule "hourly": expected 5 to 6 fields, found 1: [hourly]`},

		// Unknown keys.
		{"UnknownTopLevelKey", "databse:\n  path: x.db\n", "databse",
			"databse: unknown field, want one of database, scheduler, history, builtin, jobs"},
		{"UnknownNestedKey", "database:\n  path: x.db\n  journal_mode: wal\n", "database.journal_mode",
			"database.journal_mode: unknown field, want one of path, url, password_file, replica_id, max_open_conns, busy_timeout, max_page_count, checkpoint"},
		{"UnknownJobKey", job("command: /bin/true"), "jobs[0].command",
			"jobs[0].command: unknown field, want one of name, schedule, timeout, enabled, sql, record_successes, catch_up, catch_up_limit, retries, retry_backoff, jitter, dst, overlap"},
		{"UnknownBuiltin", "builtin:\n  vacuum: {schedule: '@daily'}\n", "builtin.vacuum",
			"builtin.vacuum: unknown field, want one of heartbeat, wal_checkpoint, optimize, quick_check, history_prune"},
		{"UnknownBuiltinKey", "builtin:\n  heartbeat: {interval: 10s}\n", "builtin.heartbeat.interval",
			"builtin.heartbeat.interval: unknown field, want one of name, schedule, timeout, enabled, sql, record_successes, catch_up, catch_up_limit, retries, retry_backoff, jitter, dst, overlap"},
		{"FirstOfTwoUnknownKeys", "database:\n  zzz: 1\n  aaa: 2\n", "database.zzz",
			"database.zzz: unknown field, want one of path, url, password_file, replica_id, max_open_conns, busy_timeout, max_page_count, checkpoint"},
		{"UnknownKeyWithNewline", "database:\n  \"a\\nb\": 1\n", `database."a\nb"`,
			`database."a\nb": unknown field, want one of path, url, password_file, replica_id, max_open_conns, busy_timeout, max_page_count, checkpoint`},

		// Job names.
		{"DuplicateJobName", job("name: nightly") + "  - {name: nightly, schedule: '@hourly', sql: SELECT 2}\n", "jobs[1].name",
			`jobs[1].name: duplicate job name "nightly" (also jobs[0])`},
		{"JobNamedLikeBuiltin", job("name: heartbeat"), "jobs[0].name",
			`jobs[0].name: duplicate job name "heartbeat" (also builtin.heartbeat)`},
		{"EmptyJobName", job("name: ''"), "jobs[0].name", "jobs[0].name: must not be empty"},
		{"JobNameUpperCase", job("name: Nightly"), "jobs[0].name",
			`jobs[0].name: "Nightly" must be lower case letters, digits and _, starting with a letter, at most 63 characters`},
		{"JobNameDash", job("name: expire-sessions"), "jobs[0].name",
			`jobs[0].name: "expire-sessions" must be lower case letters, digits and _, starting with a letter, at most 63 characters`},
		{"JobNameDigitFirst", job("name: 2nd"), "jobs[0].name",
			`jobs[0].name: "2nd" must be lower case letters, digits and _, starting with a letter, at most 63 characters`},
		{"JobNameTooLong", job("name: " + strings.Repeat("a", 64)), "jobs[0].name",
			`jobs[0].name: "` + strings.Repeat("a", 64) + `" must be lower case letters, digits and _, starting with a letter, at most 63 characters`},

		// SQL.
		{"BuiltinWithSQL", "builtin:\n  optimize: {sql: VACUUM}\n", "builtin.optimize.sql",
			"builtin.optimize.sql: built-in jobs take no SQL; add a job under jobs instead"},
		{"BuiltinRenamed", "builtin:\n  optimize: {name: optimise}\n", "builtin.optimize.name",
			"builtin.optimize.name: built-in jobs cannot be renamed"},

		// Durations.
		{"NegativeTimeout", job("timeout: -5s"), "jobs[0].timeout", "jobs[0].timeout: must be positive, got -5s"},
		{"ZeroTimeout", job("timeout: 0s"), "jobs[0].timeout", "jobs[0].timeout: must be positive, got 0s"},
		{"BadDurationUnit", job("timeout: 5x"), "jobs[0].timeout",
			`jobs[0].timeout: invalid duration "5x": want a number with a unit, such as 30s or 5m`},
		{"DurationWithoutUnit", job("timeout: 30"), "jobs[0].timeout",
			`jobs[0].timeout: invalid duration "30": want a number with a unit, such as 30s or 5m`},
		{"DSTPolicy", job("dst: sometimes"), "jobs[0].dst",
			`jobs[0].dst: must be cron or wall_clock, got "sometimes"`},
		{"DurationOverflow", job("timeout: 10000000h"), "jobs[0].timeout",
			`jobs[0].timeout: duration "10000000h" is too long: at most 2562047h47m16.854775807s`},
		{"BuiltinNegativeTimeout", "builtin:\n  heartbeat: {timeout: -1s}\n", "builtin.heartbeat.timeout",
			"builtin.heartbeat.timeout: must be positive, got -1s"},
		{"BusyTimeoutNegative", "database:\n  busy_timeout: -1s\n", "database.busy_timeout",
			"database.busy_timeout: must be positive, got -1s"},
		{"BusyTimeoutNanosecond", "database:\n  busy_timeout: 1ns\n", "database.busy_timeout",
			"database.busy_timeout: must be at least 1ms, got 1ns"},
		{"BusyTimeoutSubMillisecond", "database:\n  busy_timeout: 999us\n", "database.busy_timeout",
			"database.busy_timeout: must be at least 1ms, got 999µs"},
		{"BusyTimeoutFraction", "database:\n  busy_timeout: 1.5ms\n", "database.busy_timeout",
			"database.busy_timeout: must be a whole number of milliseconds, got 1.5ms"},
		{"BusyTimeoutTooLong", "database:\n  busy_timeout: 600h\n", "database.busy_timeout",
			"database.busy_timeout: must be at most 596h31m23.647s (SQLite's busy_timeout is a 32-bit count of milliseconds), got 600h0m0s"},
		{"RetentionSubMillisecond", "history:\n  retention: 1ns\n", "history.retention",
			"history.retention: must be at least 1ms, got 1ns"},
		{"RetentionFraction", "history:\n  retention: 1h0.5ms\n", "history.retention",
			"history.retention: must be a whole number of milliseconds, got 1h0m0.0005s"},
		{"ShutdownGraceZero", "scheduler:\n  shutdown_grace: 0s\n", "scheduler.shutdown_grace",
			"scheduler.shutdown_grace: must be positive, got 0s"},
		{"RetentionInDays", "history:\n  retention: 7d\n", "history.retention",
			`history.retention: invalid duration "7d": want a number with a unit, such as 30s or 5m`},
		{"RetentionNegative", "history:\n  retention: -1h\n", "history.retention",
			"history.retention: must be positive, got -1h"},

		// Numbers and other values.
		{"MaxPageCountNegative", "database:\n  max_page_count: -1\n", "database.max_page_count",
			"database.max_page_count: must be between 0 (no limit) and 4294967294, got -1"},
		{"MaxPageCountTooBig", "database:\n  max_page_count: 4294967295\n", "database.max_page_count",
			"database.max_page_count: must be between 0 (no limit) and 4294967294, got 4294967295"},
		{"MaxPageCountString", "database:\n  max_page_count: 1GB\n", "database.max_page_count",
			`database.max_page_count: want an integer, got "1GB"`},
		{"MaxOpenConnsZero", "database:\n  max_open_conns: 0\n", "database.max_open_conns",
			"database.max_open_conns: must be between 1 and 1024, got 0"},
		{"MaxOpenConns5000", "database:\n  max_open_conns: 5000\n", "database.max_open_conns",
			"database.max_open_conns: must be between 1 and 1024, got 5000"},
		{"MaxOpenConnsString", "database:\n  max_open_conns: four\n", "database.max_open_conns",
			`database.max_open_conns: want an integer, got "four"`},
		{"MaxOpenConnsQuoted", "database:\n  max_open_conns: \"4\"\n", "database.max_open_conns",
			`database.max_open_conns: want an integer, got "4"`},
		{"MaxOpenConnsFloat", "database:\n  max_open_conns: 1.5\n", "database.max_open_conns",
			"database.max_open_conns: want an integer, got 1.5"},
		{"MaxOpenConnsOverflow", "database:\n  max_open_conns: 99999999999999999999999\n", "database.max_open_conns",
			"database.max_open_conns: 99999999999999999999999 is out of range"},
		{"MaxOpenConnsUint64", "database:\n  max_open_conns: 18446744073709551615\n", "database.max_open_conns",
			"database.max_open_conns: 18446744073709551615 is out of range"},
		{"EnabledNotBool", job("enabled: maybe"), "jobs[0].enabled", `jobs[0].enabled: want true or false, got "maybe"`},
		{"BadTimezone", "scheduler:\n  timezone: Mars/Olympus\n", "scheduler.timezone",
			`scheduler.timezone: unknown time zone "Mars/Olympus"`},
		{"TimezoneWithSpace", "scheduler:\n  timezone: ' UTC'\n", "scheduler.timezone",
			`scheduler.timezone: unknown time zone " UTC"`},
		{"PathWithQuery", "database:\n  path: 'worker.db?_journal=delete'\n", "database.path",
			`database.path: must not contain '?', '#' or NUL: "worker.db?_journal=delete"`},
		{"PathWithFragment", "database:\n  path: 'worker.db#x'\n", "database.path",
			`database.path: must not contain '?', '#' or NUL: "worker.db#x"`},
		{"PathWithNUL", "database:\n  path: \"a\\0b\"\n", "database.path",
			`database.path: must not contain '?', '#' or NUL: "a\x00b"`},
		{"PathEndingInSlash", "database:\n  path: /var/lib/worker/\n", "database.path",
			`database.path: is a directory, want a file path: "/var/lib/worker/"`},
		{"TooManyJobs", manyJobs(MaxJobs + 1), "jobs", "jobs: at most 1000 jobs, got 1001"},

		// Shape of the document.
		{"TwoDocuments", "database:\n  path: a.db\n---\ndatabase:\n  path: b.db\n", "config",
			"config: must be a single YAML document, another one starts at line 3"},
		{"WrongTypeStringForInt", "database:\n  max_open_conns: many\n", "database.max_open_conns",
			`database.max_open_conns: want an integer, got "many"`},
		{"SequenceForMapping", "database:\n  - path: x.db\n", "database", "database: want a mapping, got a list"},
		{"MappingForSequence", "jobs:\n  name: nightly\n", "jobs", "jobs: want a list, got a mapping"},
		{"ScalarForJob", "jobs:\n  - nightly\n", "jobs[0]", `jobs[0]: want a mapping, got "nightly"`},
		{"ListForString", job("sql: [SELECT 1, SELECT 2]"), "jobs[0].sql", "jobs[0].sql: want a string, got a list"},
		{"MappingForString", "database:\n  path: {file: x.db}\n", "database.path", "database.path: want a string, got a mapping"},
		{"TopLevelList", "- database\n- jobs\n", "config", "config: want a mapping, got a list"},
		{"TopLevelScalar", "worker.db\n", "config", `config: want a mapping, got "worker.db"`},
		{"DuplicateKey", "database:\n  path: a.db\n  path: b.db\n", "database.path",
			"database.path: given twice, at lines 2 and 3"},
		{"DuplicateTopLevelKey", "jobs: []\ndatabase: {}\njobs: []\n", "jobs", "jobs: given twice, at lines 1 and 3"},
		{"DuplicateKeyInJob", "jobs:\n  - name: a\n    schedule: '@daily'\n    sql: SELECT 1\n    name: b\n", "jobs[0].name",
			"jobs[0].name: given twice, at lines 2 and 5"},
		{"YAMLTag", "database:\n  max_open_conns: !!str 4\n", "database.max_open_conns",
			`database.max_open_conns: YAML tags such as "!!str" are not supported`},
		{"MergeKey", "jobs:\n  - &a {name: a, schedule: '@daily', sql: SELECT 1}\n  - {<<: *a, name: b}\n", "jobs[1]",
			"jobs[1]: merge keys (<<) are not supported; write the fields out"},
		{"NonStringKey", "database:\n  [path]: x.db\n", "config",
			"config: invalid YAML at line 2, column 9, after database: found an invalid key for this map"},

		// Malformed YAML: no field of its own, so the position and the
		// last field before it.
		{"TabIndentation", "database:\n\tpath: x.db\n", "config",
			"config: invalid YAML at line 2, column 1, after database: found a tab character where YAML allows only spaces; indent with spaces"},
		{"BadIndentation", "jobs:\n  - name: a\n   schedule: '@daily'\n", "config",
			"config: invalid YAML at line 3, column 4, after jobs[0].name: value is not allowed in this context"},
		{"UnclosedQuote", "database:\n  path: \"x.db\n", "config",
			"config: invalid YAML at line 2, column 9, after database: could not find end character of double-quoted text"},
		{"UnclosedFlowMapping", "database: {path: x.db\n", "config",
			"config: invalid YAML at line 1, column 11: could not find flow mapping end token '}'"},
		{"NotUTF8", "database:\n  path: \"\xff.db\"\n", "config", "config: invalid YAML at line 2: not UTF-8 text"},
	}
	seen := make(map[string]bool)
	for _, tt := range tests {
		if seen[tt.name] {
			t.Fatalf("two cases named %s", tt.name)
		}
		seen[tt.name] = true
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.doc))
			if err == nil {
				t.Fatalf("got %+v, want error %q; document:\n%s", c, tt.want, tt.doc)
			}
			got := err.Error()
			if got != tt.want {
				t.Errorf("got error\n\t%s\nwant\n\t%s\ndocument:\n%s", got, tt.want, tt.doc)
			}
			if strings.ContainsAny(got, "\r\n") {
				t.Errorf("got a message of more than one line: %q", got)
			}
			if !strings.HasPrefix(got, tt.field+": ") {
				t.Errorf("got %q, want it to start with the field %q", got, tt.field)
			}
			if c != nil {
				t.Errorf("got config %+v with the error, want nil", c)
			}
		})
	}
	if len(tests) < 20 {
		t.Errorf("got %d cases, want at least 20", len(tests))
	}
}

// TestParse_ErrorsAreStable parses documents with several mistakes many
// times: the first mistake in the file is reported, always the same one.
// Ensure an entry under jobs with no sql is a Go job's entry: it keeps the
// schedule and timeout it gives, none when it gives none, and its field.
func TestParse_GoJobEntry(t *testing.T) {
	c, err := Parse([]byte(`jobs:
  - {name: nightly, schedule: '@daily', timeout: 5s}
  - {name: blank, sql: "  \n\t"}
  - {name: paused, enabled: false}
`))
	if err != nil {
		t.Fatal(err)
	}
	got := c.Jobs[len(BuiltinNames):]
	if len(got) != 3 {
		t.Fatalf("got %d user jobs, want 3", len(got))
	}
	for i, want := range []struct {
		name, spec string
		timeout    time.Duration
		enabled    bool
	}{{"nightly", "@daily", 5 * time.Second, true}, {"blank", "", 0, true}, {"paused", "", 0, false}} {
		j := got[i]
		if !j.Go || j.Name != want.name || j.Spec != want.spec || j.Timeout != want.timeout || j.Enabled != want.enabled {
			t.Errorf("jobs[%d]: got %+v, want Go entry %+v", i, j, want)
		}
		if got, want := j.Field, fmt.Sprintf("jobs[%d]", i); got != want {
			t.Errorf("jobs[%d].Field: got %v, want %v", i, got, want)
		}
		if got, want := c.GoJobError(j).Error(), j.Field+".sql: must not be empty"; got != want {
			t.Errorf("GoJobError: got %v, want %v", got, want)
		}
	}
	if (got[0].Schedule == nil) || got[1].Schedule != nil {
		t.Errorf("Schedule: got %v and %v, want a schedule and nil", got[0].Schedule, got[1].Schedule)
	}
}

func TestParse_ErrorsAreStable(t *testing.T) {
	doc := "database:\n  zz: 1\n  yy: 2\n  xx: 3\n  path: x\n  path: y\n"
	want := "database.zz: unknown field, want one of path, url, password_file, replica_id, max_open_conns, busy_timeout, max_page_count, checkpoint"
	for range 50 {
		if _, err := Parse([]byte(doc)); err == nil || err.Error() != want {
			t.Fatalf("got %v, want %s", err, want)
		}
	}
}

func TestLoad_Example(t *testing.T) {
	want := append(append([]wantJob(nil), defaultJobs...), wantJob{
		Name: "expire_sessions", Spec: "*/5 * * * *", Timeout: 30 * time.Second, Enabled: true,
		SQL: "CREATE TABLE IF NOT EXISTS sessions (id TEXT PRIMARY KEY, expires_at INTEGER NOT NULL);\n" +
			"DELETE FROM sessions WHERE expires_at < unixepoch();\n",
	})
	for _, path := range []string{"../../deploy/systemd/worker.yml", "../../deploy/docker/worker.yml"} {
		t.Run(filepath.Base(filepath.Dir(path)), func(t *testing.T) {
			if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
				t.Skipf("no example config at %s", path)
			}
			c, err := Load(path)
			if err != nil {
				t.Fatalf("Load(%s): %v", path, err)
			}
			if c.DBPath != "/var/lib/worker/worker.db" {
				t.Errorf("DBPath: got %q, want %q", c.DBPath, "/var/lib/worker/worker.db")
			}
			checkJobs(t, c.Jobs, want)
		})
	}
	t.Run("kubernetes", func(t *testing.T) {
		const path = "../../deploy/kubernetes/configmap.yaml"
		b, err := os.ReadFile(path)
		if errors.Is(err, os.ErrNotExist) {
			t.Skipf("no ConfigMap at %s", path)
		}
		if err != nil {
			t.Fatal(err)
		}
		var cm struct {
			Data map[string]string `yaml:"data"`
		}
		if err := yaml.Unmarshal(b, &cm); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		doc, ok := cm.Data["worker.yml"]
		if !ok {
			t.Fatalf("%s: got no data.worker.yml, want the config", path)
		}
		checkJobs(t, mustParse(t, doc).Jobs, want)
	})
}

func TestLoad_Errors(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.yml")
	if _, err := Load(missing); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(missing): got %v, want an error wrapping os.ErrNotExist", err)
	}
	bad := filepath.Join(dir, "bad.yml")
	if err := os.WriteFile(bad, []byte("database:\n  max_open_conns: 0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	want := "config file " + bad + ": database.max_open_conns: must be between 1 and 1024, got 0"
	if _, err := Load(bad); err == nil || err.Error() != want {
		t.Errorf("Load(bad): got %v, want %s", err, want)
	}
}

// checkConfig holds the invariants of Parse for any input.
func checkConfig(t *testing.T, b []byte) {
	c, err := Parse(b)
	if err != nil {
		msg := err.Error()
		if msg == "" || strings.ContainsAny(msg, "\r\n") {
			t.Fatalf("got error %q, want one non-empty line", msg)
		}
		if field, _, ok := strings.Cut(msg, ": "); !ok || field == "" {
			t.Fatalf("got error %q, want it to start with a field", msg)
		}
		if c != nil {
			t.Fatalf("got a config with error %q", msg)
		}
		if _, err2 := Parse(b); err2 == nil || err2.Error() != msg {
			t.Fatalf("got error %q, then %v for the same input", msg, err2)
		}
		return
	}
	if c == nil {
		t.Fatal("got nil config and nil error")
	}
	if len(c.Jobs) < len(BuiltinNames) || len(c.Jobs) > len(BuiltinNames)+MaxJobs {
		t.Fatalf("got %d jobs", len(c.Jobs))
	}
	if c.MaxOpenConns < 1 || c.MaxOpenConns > 1024 || c.BusyTimeout <= 0 || c.ShutdownGrace <= 0 ||
		c.HistoryRetention < 0 || c.Location == nil || c.DBPath == "" || strings.ContainsAny(c.DBPath, "?#\x00") {
		t.Fatalf("got invalid settings %+v", c)
	}
	if c.BusyTimeout%time.Millisecond != 0 || c.BusyTimeout > MaxBusyTimeout || c.HistoryRetention%time.Millisecond != 0 {
		t.Fatalf("got busy_timeout %s, retention %s: want whole milliseconds", c.BusyTimeout, c.HistoryRetention)
	}
	names := make(map[string]bool)
	for i, j := range c.Jobs {
		if names[j.Name] {
			t.Fatalf("job %d: duplicate name %q", i, j.Name)
		}
		names[j.Name] = true
		if j.Go { // a Go job's entry: what it gives is checked, the rest is the Go job's
			if j.Builtin || j.SQL != "" || j.Timeout < 0 || (j.Spec != "") != (j.Schedule != nil) {
				t.Fatalf("job %d: got invalid Go job entry %+v", i, j)
			}
			continue
		}
		if j.Timeout <= 0 {
			t.Fatalf("job %s: timeout %s", j.Name, j.Timeout)
		}
		if j.Schedule == nil {
			t.Fatalf("job %s: nil Schedule", j.Name)
		}
		if j.Schedule.Next(time.Now()).IsZero() {
			t.Fatalf("job %s: schedule %q never fires", j.Name, j.Spec)
		}
		if i < len(BuiltinNames) {
			if j.Name != BuiltinNames[i] || !j.Builtin || j.SQL != "" {
				t.Fatalf("job %d: got %+v, want built-in %s", i, j, BuiltinNames[i])
			}
			continue
		}
		if j.Builtin || !jobNameRE.MatchString(j.Name) || strings.TrimSpace(j.SQL) == "" {
			t.Fatalf("job %d: got invalid user job %+v", i, j)
		}
		if err := checkSQL(stmts(t), "sql", j.SQL); err != nil {
			t.Fatalf("job %d: accepted SQL that checkSQL refuses: %v", i, err)
		}
	}
}

// stmts returns a Parser closed at cleanup.
func stmts(t *testing.T) *sqlstmt.Parser {
	t.Helper()
	p, err := sqlstmt.Open()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// BenchmarkParse_MaxJobs parses MaxJobs jobs of three statements each,
// every statement split and classified by SQLite.
func BenchmarkParse_MaxJobs(b *testing.B) {
	var doc strings.Builder
	doc.WriteString("jobs:\n")
	for i := range MaxJobs {
		fmt.Fprintf(&doc, "  - {name: j%d, schedule: '@hourly', sql: 'CREATE TABLE IF NOT EXISTS t (x); INSERT INTO t VALUES (1); DELETE FROM t'}\n", i)
	}
	b.SetBytes(int64(doc.Len()))
	for b.Loop() {
		if _, err := Parse([]byte(doc.String())); err != nil {
			b.Fatal(err)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, doc := range []string{
		"",
		"database: {path: x.db, max_open_conns: 2, busy_timeout: 1s}\n",
		"scheduler: {timezone: UTC, shutdown_grace: 5s}\nhistory: {retention: 1h}\n",
		"builtin:\n  heartbeat: {schedule: '@every 30s', enabled: false}\n",
		job("timeout: 5s"),
		job("sql: 'INSERT INTO t VALUES (1); COMMIT'"),
		job("sql: \"CREATE TRIGGER tr AFTER INSERT ON t BEGIN SELECT 'COMMIT'; END; SAVEPOINT a\""),
		"jobs:\n  - {name: a, schedule: &s '@hourly', sql: &q x}\n  - {name: b, schedule: *s, sql: *q}\n",
		"database:\n\tpath: x\n",
		"a: 1\n---\nb: 2\n",
	} {
		f.Add([]byte(doc))
	}
	f.Fuzz(checkConfig)
}
