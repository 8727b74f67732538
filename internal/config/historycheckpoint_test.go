package config

import (
	"errors"
	"testing"
)

func jobByName(t *testing.T, c *Config, name string) Job {
	t.Helper()
	for _, j := range c.Jobs {
		if j.Name == name {
			return j
		}
	}
	t.Fatalf("no job %q in %+v", name, c.Jobs)
	return Job{}
}

// Ensure database.checkpoint selects who checkpoints: the worker by
// default, another process under external, where the wal_checkpoint
// built-in is off and an entry that leaves it on is refused, naming the
// field.
func TestConfig_Checkpoint(t *testing.T) {
	t.Run("Default", func(t *testing.T) {
		c := mustParse(t, "")
		if c.Checkpoint != CheckpointWorker {
			t.Fatalf("Checkpoint: got %q, want %q", c.Checkpoint, CheckpointWorker)
		}
		if j := jobByName(t, c, WALCheckpoint); !j.Enabled {
			t.Fatalf("wal_checkpoint Enabled: got %v, want true", j.Enabled)
		}
	})
	t.Run("External", func(t *testing.T) {
		c := mustParse(t, "database:\n  checkpoint: external\n")
		if c.Checkpoint != CheckpointExternal {
			t.Fatalf("Checkpoint: got %q, want %q", c.Checkpoint, CheckpointExternal)
		}
		if j := jobByName(t, c, WALCheckpoint); j.Enabled {
			t.Fatalf("wal_checkpoint Enabled: got %v, want false", j.Enabled)
		}
		for _, j := range c.EnabledJobs() {
			if j.Name == WALCheckpoint {
				t.Fatalf("EnabledJobs: got wal_checkpoint, want it left out")
			}
		}
	})
	t.Run("ExternalDisabledEntry", func(t *testing.T) {
		c := mustParse(t, "database:\n  checkpoint: external\nbuiltin:\n  wal_checkpoint: {enabled: false}\n")
		if j := jobByName(t, c, WALCheckpoint); j.Enabled {
			t.Fatalf("wal_checkpoint Enabled: got %v, want false", j.Enabled)
		}
	})
	t.Run("Worker", func(t *testing.T) {
		c := mustParse(t, "database:\n  checkpoint: worker\n")
		if c.Checkpoint != CheckpointWorker {
			t.Fatalf("Checkpoint: got %q, want %q", c.Checkpoint, CheckpointWorker)
		}
	})
	for _, tt := range []struct {
		name, doc, want string
	}{
		{"Unknown", "database:\n  checkpoint: litestream\n",
			`database.checkpoint: must be worker or external, got "litestream"`},
		{"Bool", "database:\n  checkpoint: false\n",
			`database.checkpoint: must be worker or external, got "false"`},
		{"ExternalEnabled", "database:\n  checkpoint: external\nbuiltin:\n  wal_checkpoint: {enabled: true}\n",
			"builtin.wal_checkpoint.enabled: must be false under database.checkpoint: external, where another process (Litestream) checkpoints the WAL"},
		{"ExternalScheduled", "database:\n  checkpoint: external\nbuiltin:\n  wal_checkpoint: {schedule: '@every 1m'}\n",
			"builtin.wal_checkpoint.enabled: must be false under database.checkpoint: external, where another process (Litestream) checkpoints the WAL"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.doc))
			if err == nil || err.Error() != tt.want {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
	t.Run("ErrCheckpointExternal", func(t *testing.T) {
		_, err := Parse([]byte("database:\n  checkpoint: external\nbuiltin:\n  wal_checkpoint: {enabled: true}\n"))
		if !errors.Is(err, ErrCheckpointExternal) {
			t.Fatalf("got %v, want %v", err, ErrCheckpointExternal)
		}
	})
}

// Ensure history.max_rows_per_job and record_successes are read, default to
// no cap and to recording, and are refused out of range, naming the field.
func TestConfig_History(t *testing.T) {
	t.Run("Default", func(t *testing.T) {
		c := mustParse(t, "")
		if c.HistoryMaxRowsPerJob != 0 {
			t.Fatalf("HistoryMaxRowsPerJob: got %d, want 0", c.HistoryMaxRowsPerJob)
		}
		for _, j := range c.Jobs {
			if j.OmitSuccessRows {
				t.Fatalf("%s OmitSuccessRows: got %v, want false", j.Name, j.OmitSuccessRows)
			}
		}
	})
	t.Run("Set", func(t *testing.T) {
		c := mustParse(t, `history:
  max_rows_per_job: 1000
builtin:
  heartbeat: {record_successes: false}
jobs:
  - {name: quiet, schedule: '@hourly', sql: SELECT 1, record_successes: false}
  - {name: loud, schedule: '@hourly', sql: SELECT 1, record_successes: true}
  - {name: go_job, record_successes: false}
`)
		if c.HistoryMaxRowsPerJob != 1000 {
			t.Fatalf("HistoryMaxRowsPerJob: got %d, want 1000", c.HistoryMaxRowsPerJob)
		}
		for name, want := range map[string]bool{
			"heartbeat": true, "quick_check": false, "quiet": true, "loud": false, "go_job": true,
		} {
			if got := jobByName(t, c, name).OmitSuccessRows; got != want {
				t.Errorf("%s OmitSuccessRows: got %v, want %v", name, got, want)
			}
		}
	})
	t.Run("RunAtStart", func(t *testing.T) {
		c := mustParse(t, "")
		for _, j := range c.Jobs {
			if got, want := j.RunAtStart, j.Name == QuickCheck; got != want {
				t.Errorf("%s RunAtStart: got %v, want %v", j.Name, got, want)
			}
		}
	})
	for _, tt := range []struct {
		name, doc, want string
	}{
		{"MaxRowsNegative", "history:\n  max_rows_per_job: -1\n",
			"history.max_rows_per_job: must be between 0 (no cap) and 2147483647, got -1"},
		{"MaxRowsTooBig", "history:\n  max_rows_per_job: 2147483648\n",
			"history.max_rows_per_job: must be between 0 (no cap) and 2147483647, got 2147483648"},
		{"MaxRowsString", "history:\n  max_rows_per_job: lots\n",
			`history.max_rows_per_job: want an integer, got "lots"`},
		{"RecordSuccessesString", "builtin:\n  heartbeat: {record_successes: no}\n",
			`builtin.heartbeat.record_successes: want true or false, got "no"`},
		{"RecordSuccessesJob", "jobs:\n  - {name: a, schedule: '@daily', sql: SELECT 1, record_successes: 0}\n",
			"jobs[0].record_successes: want true or false, got 0"},
		{"UnknownHistoryKey", "history:\n  max_rows: 5\n",
			"history.max_rows: unknown field, want one of retention, max_rows_per_job, duplicate_check_interval"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.doc))
			if err == nil || err.Error() != tt.want {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}
