package worker

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/sqlworker/worker/internal/config"
)

// A Config is checked once, by internal/config's File.Validate: the checks
// of a YAML file. New and Reload write a Config in that form (file), so
// that a Config built in Go is refused for exactly what a file is, with
// the same reason; check then names the field of the Config (ConfigError).

// check validates c as ParseConfig validates a file, and returns the
// configuration the worker runs, every default filled in.
func (c *Config) check() (*config.Config, error) {
	f, err := c.file()
	if err != nil {
		return nil, err
	}
	ic, err := f.Validate(config.Overrides{})
	if err != nil {
		return nil, c.goError(err)
	}
	if c.Location != nil {
		ic.Location = c.Location
	}
	ic.Source, ic.Empty, ic.GoNames = c.source, c.empty, !c.parsed
	builtins, users := c.places()
	for i := range ic.Jobs {
		j := &ic.Jobs[i]
		places := users
		if j.Builtin {
			places = builtins
		}
		k, ok := places[j.Name]
		if ok && c.Jobs[k].Timeout < 0 {
			j.Timeout = -1 // no bound: a Go Config's own, the file has no way to say it
		}
		if ok && ic.GoNames {
			j.Field = "Config.Jobs[" + strconv.Itoa(k) + "]"
		}
	}
	return ic, nil
}

// places returns the index in c.Jobs of each built-in and user job, by name.
func (c *Config) places() (builtins, users map[string]int) {
	builtins, users = make(map[string]int), make(map[string]int)
	for k, j := range c.Jobs {
		if j.Builtin {
			builtins[j.Name] = k
		} else if _, dup := users[j.Name]; !dup {
			users[j.Name] = k
		}
	}
	return builtins, users
}

// file writes c as the YAML document it would be. It refuses what a
// document cannot say: a Builtin job that is not a built-in, a built-in
// given twice.
func (c *Config) file() (*config.File, error) {
	var f config.File
	d := &f.Database
	d.Path = c.DBPath
	d.URL, d.PasswordFile, d.ReplicaID, d.Checkpoint = c.DBURL, c.DBPasswordFile, c.DBReplicaID, c.Checkpoint
	d.MaxOpenConns, d.MaxPageCount = nonZero(c.MaxOpenConns), nonZero(c.MaxPageCount)
	d.BusyTimeout = durationString(c.BusyTimeout)
	if c.DBURL != "" { // SQLite's defaults, as DefaultConfig fills them in, are no settings
		if d.Path == DefaultDBPath {
			d.Path = ""
		}
		if c.BusyTimeout == DefaultBusyTimeout {
			d.BusyTimeout = ""
		}
		if c.Checkpoint == DefaultCheckpoint {
			d.Checkpoint = ""
		}
	}
	f.Scheduler.ShutdownGrace = durationString(c.ShutdownGrace)
	f.Scheduler.Lease = durationString(c.Lease)
	f.History.Retention = durationString(c.HistoryRetention)
	if c.HistoryRetention < 0 {
		f.History.Retention = "0s"
	}
	f.History.MaxRowsPerJob = nonZero(c.HistoryMaxRowsPerJob)
	f.History.DuplicateCheck = durationString(c.DuplicateCheck)
	for k, j := range c.Jobs {
		fj := fileJob(j)
		if !j.Builtin {
			f.Jobs = append(f.Jobs, fj)
			continue
		}
		field := "Config.Jobs[" + strconv.Itoa(k) + "]"
		switch {
		case !isBuiltin(j.Name):
			return nil, &ConfigError{Field: field + ".Name", Reason: fmt.Sprintf("%q is no built-in job; want one of %v", j.Name, config.BuiltinNames)}
		case f.Builtin[j.Name] != nil:
			return nil, &ConfigError{Field: field + ".Name", Reason: fmt.Sprintf("duplicate built-in job %q", j.Name)}
		}
		if f.Builtin == nil {
			f.Builtin = make(map[string]*config.FileJob)
		}
		f.Builtin[j.Name] = &fj
	}
	return &f, nil
}

func isBuiltin(name string) bool {
	for _, b := range config.BuiltinNames {
		if b == name {
			return true
		}
	}
	return false
}

// fileJob writes j as the entry of a document.
func fileJob(j JobConfig) config.FileJob {
	fj := config.FileJob{Name: j.Name, Spec: j.Spec, SQL: j.SQL, CatchUp: string(j.CatchUp), DST: string(j.DST), Overlap: string(j.Overlap),
		CatchUpLimit: nonZero(j.CatchUpLimit), Retries: nonZero(j.Retries),
		RetryBackoff: durationString(j.RetryBackoff), Jitter: durationString(j.Jitter)}
	if j.Timeout > 0 {
		fj.Timeout = j.Timeout.String()
	}
	if j.Disabled {
		fj.Enabled = new(bool)
	}
	if j.OmitSuccessRows {
		fj.RecordSuccesses = new(bool)
	}
	return fj
}

// nonZero is a document's optional number: nil for 0, the default.
func nonZero(n int) *int {
	if n == 0 {
		return nil
	}
	return &n
}

// durationString is a document's duration: "" for 0, the default.
func durationString(d time.Duration) string {
	if d == 0 {
		return ""
	}
	return d.String()
}

// goError returns err, Validate's error about the document c wrote,
// naming the field of c.
func (c *Config) goError(err error) error {
	p, reason, ok := config.ParsePath(err.Error())
	if !ok {
		return fmt.Errorf("worker: %w", err)
	}
	e := &ConfigError{Field: "Config." + p.GoField, Reason: reason, Err: err}
	if p.Field != "" {
		return e
	}
	k, n := -1, -1
	for i, j := range c.Jobs {
		if !j.Builtin {
			n++
		}
		if (j.Builtin && j.Name == p.Builtin) || (!j.Builtin && p.User >= 0 && n == p.User) {
			k = i
			break
		}
	}
	if k < 0 { // a built-in left out: its defaults
		e.Field = "Config.Jobs (built-in " + p.Builtin + ")"
		return e
	}
	e.Field = "Config.Jobs[" + strconv.Itoa(k) + "]"
	if p.Key != "" {
		e.Field += "." + p.GoField
	}
	if p.Key == "enabled" { // Disabled says it the other way round
		e.Reason = strings.Replace(reason, "must be false", "must be true", 1)
	}
	if p.Key != "name" && config.CheckName(c.Jobs[k].Name) == nil {
		e.Job = c.Jobs[k].Name
	}
	return e
}

// fromInternal returns the Config of a validated one, as ParseConfig
// returns it: every default filled in.
func fromInternal(ic *config.Config) *Config {
	c := &Config{
		DBPath: ic.DBPath, DBURL: ic.DBURL, DBPasswordFile: ic.DBPasswordFile, DBReplicaID: ic.DBReplicaID,
		MaxOpenConns: ic.MaxOpenConns, BusyTimeout: ic.BusyTimeout, MaxPageCount: ic.MaxPageCount, Checkpoint: ic.Checkpoint,
		Location: ic.Location, ShutdownGrace: ic.ShutdownGrace, Lease: ic.Lease,
		HistoryRetention: ic.HistoryRetention, HistoryMaxRowsPerJob: ic.HistoryMaxRowsPerJob, DuplicateCheck: ic.DuplicateCheck,
		source: ic.Source, parsed: true, empty: ic.Empty,
	}
	if ic.Postgres() { // SQLite's settings hold their defaults, which PostgreSQL refuses
		c.DBPath, c.BusyTimeout, c.Checkpoint = "", 0, ""
	}
	if c.HistoryRetention == 0 {
		c.HistoryRetention = -1
	}
	for _, j := range ic.Jobs {
		c.Jobs = append(c.Jobs, JobConfig{Name: j.Name, Builtin: j.Builtin, Spec: j.Spec, SQL: j.SQL, Disabled: !j.Enabled,
			Timeout: j.Timeout, OmitSuccessRows: j.OmitSuccessRows, CatchUp: j.CatchUp, CatchUpLimit: j.CatchUpLimit,
			Retries: j.Retries, RetryBackoff: j.RetryBackoff, Jitter: j.Jitter, DST: j.DST, Overlap: j.Overlap})
	}
	return c
}
