package config

import (
	"strconv"
	"strings"
)

// goFields are the fields of worker.Config that the file's settings are
// read into, by key: an error about a Config built in Go names the field.
var goFields = map[string]string{
	"database.path":                    "DBPath",
	"database.url":                     "DBURL",
	"database.password_file":           "DBPasswordFile",
	"database.replica_id":              "DBReplicaID",
	"database.max_open_conns":          "MaxOpenConns",
	"database.busy_timeout":            "BusyTimeout",
	"database.max_page_count":          "MaxPageCount",
	"database.checkpoint":              "Checkpoint",
	"scheduler.timezone":               "Location",
	"scheduler.shutdown_grace":         "ShutdownGrace",
	"scheduler.lease":                  "Lease",
	"history.retention":                "HistoryRetention",
	"history.max_rows_per_job":         "HistoryMaxRowsPerJob",
	"history.duplicate_check_interval": "DuplicateCheck",
	"jobs":                             "Jobs",
}

// goJobFields are the fields of worker.JobConfig, by the key of a job.
var goJobFields = map[string]string{
	"name": "Name", "schedule": "Spec", "timeout": "Timeout", "enabled": "Disabled", "sql": "SQL",
	"record_successes": "OmitSuccessRows", "catch_up": "CatchUp", "catch_up_limit": "CatchUpLimit",
	"retries": "Retries", "retry_backoff": "RetryBackoff", "jitter": "Jitter", "dst": "DST", "overlap": "Overlap",
}

// JobField returns the field of a job's key, such as "jobs[2].sql", or
// "Config.Jobs[7].SQL" in a Config built in Go (GoNames).
func (c *Config) JobField(j Job, key string) string {
	if c.GoNames {
		key = goJobFields[key]
	}
	return j.Field + "." + key
}

// Path is where an error of Validate is: a section's key
// ("database.url"), a job ("jobs[2]" or "builtin.heartbeat", User telling
// which) and its key ("schedule", or "" for the job as a whole).
type Path struct {
	Field   string // a key outside jobs and builtin, or ""
	Builtin string // the built-in's name, under builtin
	User    int    // the index under jobs, -1 when the path is not there
	Key     string // the job's key
	GoField string // Field as worker.Config names it, or Key as worker.JobConfig does
}

// ParsePath splits the field that starts an error of Validate ("jobs[2].schedule: ...")
// from its reason; ok is false when the error does not start with a field
// of the file.
func ParsePath(msg string) (p Path, reason string, ok bool) {
	field, reason, ok := strings.Cut(msg, ": ")
	if !ok {
		return Path{}, msg, false
	}
	p.User = -1
	switch {
	case strings.HasPrefix(field, "jobs["):
		idx, key, _ := strings.Cut(strings.TrimPrefix(field, "jobs["), "]")
		n, err := strconv.Atoi(idx)
		if err != nil {
			return Path{}, msg, false
		}
		p.User, p.Key = n, strings.TrimPrefix(key, ".")
	case strings.HasPrefix(field, "builtin."):
		p.Builtin, p.Key, _ = strings.Cut(strings.TrimPrefix(field, "builtin."), ".")
	default:
		p.Field = field
		p.GoField, ok = goFields[field]
		return p, reason, ok
	}
	if p.Key != "" {
		if p.GoField, ok = goJobFields[p.Key]; !ok {
			return Path{}, msg, false
		}
	}
	return p, reason, true
}
