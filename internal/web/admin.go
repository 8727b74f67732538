package web

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// Paths of the admin API, served only when Config.Admin is set.
const (
	AdminJobsPath = "/api/v1/jobs"
	AdminRunPath  = "/api/v1/jobs/{name}/run"
)

// Errors an Admin returns; the admin API maps them to status codes.
var (
	// ErrUnknownJob is a job that is not scheduled: no such name, or a
	// disabled job. 404.
	ErrUnknownJob = errors.New("unknown job")
	// ErrJobRunning is a run asked for while the job's previous run is
	// still going; the run is recorded as skipped. 409.
	ErrJobRunning = errors.New("job is already running")
	// ErrUnavailable is a run asked for before the worker started or once
	// it is shutting down. 503.
	ErrUnavailable = errors.New("worker is not running")
)

// Admin is what the admin API reads and runs.
type Admin interface {
	// Jobs returns every job, disabled ones included.
	Jobs() ([]JobStatus, error)
	// RunNow runs the job now, through the same chain as a scheduled run,
	// and returns its record once it finished. Its error wraps
	// ErrUnknownJob, ErrJobRunning (with the skipped run's record) or
	// ErrUnavailable.
	RunNow(name string) (*RunRecord, error)
}

// JobStatus is a job as GET /api/v1/jobs lists it.
type JobStatus struct {
	Name     string `json:"name"`
	Kind     string `json:"kind"`     // builtin, sql or go
	Schedule string `json:"schedule"` // as written in the config or given to Register
	// Timeout bounds each run, as a Go duration such as "30s"; "0s" is none.
	Timeout string `json:"timeout"`
	Enabled bool   `json:"enabled"`
	// CatchUp is the policy for missed ticks (skip, once or all) and
	// CatchUpLimit the most that all runs.
	CatchUp      string `json:"catch_up"`
	CatchUpLimit int    `json:"catch_up_limit"`
	// Retries is how many more attempts a retryable failure gets, the
	// first after RetryBackoff (a Go duration), each next one after twice
	// the wait before it.
	Retries      int    `json:"retries"`
	RetryBackoff string `json:"retry_backoff"`
	// Jitter bounds the random delay of each scheduled run; "0s" is none.
	Jitter string `json:"jitter"`
	// Overlap is the policy for a run that comes while the job's previous
	// run is going: skip, buffer_one or replace.
	Overlap string `json:"overlap"`
	// NextRun is the next scheduled time; null when disabled or before
	// scheduling starts.
	NextRun *time.Time `json:"next_run"`
	// LastRun is the run that finished last since the worker started,
	// skipped runs included; null before the first.
	LastRun *RunRecord `json:"last_run"`
	// JobState is whether it runs and whether it is paused (pause.go).
	JobState
}

// RunRecord is a finished run, as job_runs records it. Times are RFC 3339
// in UTC.
type RunRecord struct {
	Job          string     `json:"job"`
	ScheduledAt  *time.Time `json:"scheduled_at"`
	StartedAt    *time.Time `json:"started_at"`
	EndedAt      *time.Time `json:"ended_at"`
	Result       string     `json:"result"` // success, failure, skipped, panic, timeout, cancelled
	Error        string     `json:"error"`  // "" on success
	RowsAffected int64      `json:"rows_affected"`
	// Attempt is 1 for a tick's first attempt and n+1 for its nth retry.
	Attempt int `json:"attempt"`
	// JitterMS is the random delay, in milliseconds, the run waited after
	// its scheduled time.
	JitterMS int64 `json:"jitter_ms"`
}

// UTC returns t in UTC, or nil when t is zero: for the times of JobStatus
// and RunRecord.
func UTC(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

// jobList is the body of GET /api/v1/jobs.
type jobList struct {
	Jobs []JobStatus `json:"jobs"`
}

// EchoLimit bounds how many bytes of a request's own text an error echoes.
const EchoLimit = 64

// Quote quotes s for an error message, cut to EchoLimit bytes with its
// length: a 900 KB job name must not come back as 900 KB of 404.
func Quote(s string) string {
	if len(s) <= EchoLimit {
		return strconv.Quote(s)
	}
	return fmt.Sprintf("%q… (%d bytes)", s[:EchoLimit], len(s))
}

// errorBody is the body of an admin API error.
type errorBody struct {
	Error string `json:"error"`
}

func handleAdmin(mux *http.ServeMux, a Admin) {
	mux.HandleFunc("GET "+AdminJobsPath, func(w http.ResponseWriter, _ *http.Request) {
		list, err := a.Jobs()
		if err != nil {
			writeJSON(w, http.StatusInternalServerError, errorBody{err.Error()})
			return
		}
		if list == nil {
			list = []JobStatus{}
		}
		writeJSON(w, http.StatusOK, jobList{list})
	})
	mux.HandleFunc("POST "+AdminRunPath, func(w http.ResponseWriter, r *http.Request) {
		run, err := a.RunNow(r.PathValue("name"))
		switch {
		case err == nil:
			writeJSON(w, http.StatusOK, run)
		case errors.Is(err, ErrJobRunning) && run != nil:
			writeJSON(w, http.StatusConflict, run)
		default:
			writeError(w, err)
		}
	})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
