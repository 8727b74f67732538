package config

import (
	"testing"
	"time"

	"github.com/sqlworker/worker/internal/jobs"
)

// Ensure catch_up, catch_up_limit, retries, retry_backoff and jitter are
// read into each job, built-ins included, and default to nothing.
func TestConfig_Reliability(t *testing.T) {
	t.Run("Default", func(t *testing.T) {
		for _, j := range mustParse(t, job("name: plain")).Jobs {
			if j.CatchUp != "" || j.CatchUpLimit != 0 || j.Retries != 0 || j.RetryBackoff != 0 || j.Jitter != 0 {
				t.Errorf("%s: got catch_up %q limit %d retries %d backoff %s jitter %s, want none",
					j.Name, j.CatchUp, j.CatchUpLimit, j.Retries, j.RetryBackoff, j.Jitter)
			}
		}
	})
	t.Run("Set", func(t *testing.T) {
		c := mustParse(t, `builtin:
  heartbeat: {catch_up: once, jitter: 2s}
jobs:
  - {name: all, schedule: '* * * * * *', sql: SELECT 1, catch_up: all, catch_up_limit: 50, retries: 3, retry_backoff: 250ms, jitter: 999ms}
  - {name: go_job, catch_up: all, retries: 2}
`)
		for _, tt := range []struct {
			name    string
			catchUp jobs.CatchUp
			limit   int
			retries int
			backoff time.Duration
			jitter  time.Duration
		}{
			{"heartbeat", jobs.CatchUpOnce, 0, 0, 0, 2 * time.Second},
			{"all", jobs.CatchUpAll, 50, 3, 250 * time.Millisecond, 999 * time.Millisecond},
			{"go_job", jobs.CatchUpAll, 0, 2, 0, 0},
		} {
			j := jobByName(t, c, tt.name)
			if j.CatchUp != tt.catchUp || j.CatchUpLimit != tt.limit || j.Retries != tt.retries || j.RetryBackoff != tt.backoff || j.Jitter != tt.jitter {
				t.Errorf("%s: got %q %d %d %s %s, want %q %d %d %s %s", tt.name,
					j.CatchUp, j.CatchUpLimit, j.Retries, j.RetryBackoff, j.Jitter,
					tt.catchUp, tt.limit, tt.retries, tt.backoff, tt.jitter)
			}
		}
	})
	for _, tt := range []struct {
		name, doc, want string
	}{
		{"CatchUpUnknown", job("catch_up: always"), `jobs[0].catch_up: must be skip, once or all, got "always"`},
		{"CatchUpWithoutSuccessRows", job("catch_up: once, record_successes: false"),
			"jobs[0].catch_up: once needs record_successes: true: the last tick is read from job_runs, which keeps no successes under record_successes: false"},
		{"CatchUpBuiltinWithoutSuccessRows", "builtin:\n  heartbeat: {catch_up: all, record_successes: false}\n",
			"builtin.heartbeat.catch_up: all needs record_successes: true: the last tick is read from job_runs, which keeps no successes under record_successes: false"},
		{"CatchUpLimitWithoutAll", job("catch_up_limit: 5"), "jobs[0].catch_up_limit: only with catch_up: all"},
		{"CatchUpLimitZero", job("catch_up: all, catch_up_limit: 0"), "jobs[0].catch_up_limit: must be between 1 and 1000, got 0"},
		{"CatchUpLimitTooBig", job("catch_up: all, catch_up_limit: 1001"), "jobs[0].catch_up_limit: must be between 1 and 1000, got 1001"},
		{"RetriesNegative", job("retries: -1"), "jobs[0].retries: must be between 0 and 10, got -1"},
		{"RetriesTooMany", job("retries: 11"), "jobs[0].retries: must be between 0 and 10, got 11"},
		{"RetriesString", job("retries: many"), `jobs[0].retries: want an integer, got "many"`},
		{"RetryBackoffZero", job("retry_backoff: 0s"), "jobs[0].retry_backoff: must be positive, got 0s"},
		{"RetryBackoffBad", job("retry_backoff: soon"), `jobs[0].retry_backoff: invalid duration "soon": want a number with a unit, such as 30s or 5m`},
		{"RetryBackoffFraction", job("retry_backoff: 1.5ms"), "jobs[0].retry_backoff: must be a whole number of milliseconds, got 1.5ms"},
		{"RetryBackoffTooLong", job("retry_backoff: 2h"), "jobs[0].retry_backoff: must be at most 1h0m0s, got 2h0m0s"},
		{"JitterNegative", job("jitter: -1s"), "jobs[0].jitter: must be positive, got -1s"},
		{"JitterFraction", job("jitter: 1.5ms"), "jobs[0].jitter: must be a whole number of milliseconds, got 1.5ms"},
		{"JitterInterval", job("jitter: 24h"), "jobs[0].jitter: must be less than the schedule's interval (24h0m0s), got 24h0m0s"},
		{"JitterEverySecond", "jobs:\n  - {name: a, schedule: '* * * * * *', sql: SELECT 1, jitter: 1s}\n",
			"jobs[0].jitter: must be less than the schedule's interval (1s), got 1s"},
		{"JitterWeekdays", "jobs:\n  - {name: a, schedule: '0 9 * * 1-5', sql: SELECT 1, jitter: 48h}\n",
			"jobs[0].jitter: must be less than the schedule's interval (24h0m0s), got 48h0m0s"},
		{"JitterBuiltin", "builtin:\n  heartbeat: {jitter: 10s}\n",
			"builtin.heartbeat.jitter: must be less than the schedule's interval (10s), got 10s"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.doc))
			if err == nil || err.Error() != tt.want {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

// Ensure overlap is read into each job, built-ins included, defaults to
// "" (skip), and a bad one is refused naming the field.
func TestConfig_Overlap(t *testing.T) {
	c := mustParse(t, `builtin:
  heartbeat: {overlap: buffer_one}
jobs:
  - {name: rep, schedule: '* * * * * *', sql: SELECT 1, overlap: replace}
  - {name: plain, schedule: '* * * * * *', sql: SELECT 1}
`)
	for name, want := range map[string]jobs.Overlap{"heartbeat": jobs.OverlapBufferOne, "rep": jobs.OverlapReplace, "plain": ""} {
		if got := jobByName(t, c, name).Overlap; got != want {
			t.Errorf("%s: got overlap %q, want %q", name, got, want)
		}
	}
	_, err := Parse([]byte(job("overlap: allow")))
	if want := `jobs[0].overlap: must be skip, buffer_one or replace, got "allow"`; err == nil || err.Error() != want {
		t.Fatalf("got %v, want %v", err, want)
	}
}
