package worker

import (
	"github.com/sqlworker/worker/internal/config"
)

// Config is a validated configuration: the database, the scheduler's time
// zone and shutdown grace, the history's retention, and the jobs (the
// built-in ones first, then those under jobs in the file). Build one with
// DefaultConfig, LoadConfig or ParseConfig and change its fields before
// New: every field holds a default, documented with the Default* constants.
type Config = config.Config

// JobConfig is one job of a Config. An entry under jobs with no sql has Go
// set: it refers to a Go job registered by that name.
type JobConfig = config.Job

// Defaults of a Config.
const (
	DefaultDBPath           = config.DefaultDBPath           // Config.DBPath
	DefaultMaxOpenConns     = config.DefaultMaxOpenConns     // Config.MaxOpenConns
	DefaultBusyTimeout      = config.DefaultBusyTimeout      // Config.BusyTimeout
	DefaultShutdownGrace    = config.DefaultShutdownGrace    // Config.ShutdownGrace
	DefaultHistoryRetention = config.DefaultHistoryRetention // Config.HistoryRetention
	// DefaultJobTimeout bounds a run of a job registered without
	// WithTimeout, as it bounds a SQL job without a timeout.
	DefaultJobTimeout = config.DefaultJobTimeout
)

// DefaultConfig returns the configuration of an empty file: the database at
// DefaultDBPath and every built-in job on its production schedule.
func DefaultConfig() *Config { return config.Default() }

// LoadConfig reads and validates the YAML file at path. Every error is one
// line naming the file and the field, as
// `config file worker.yml: jobs[2].schedule: ...`.
func LoadConfig(path string) (*Config, error) { return config.Load(path) }

// ParseConfig validates a YAML document, as LoadConfig does a file; an
// empty document yields DefaultConfig.
func ParseConfig(b []byte) (*Config, error) { return config.Parse(b) }
