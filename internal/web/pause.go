package web

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// Paths of the admin API's pause and resume.
const (
	AdminPausePath  = "/api/v1/jobs/{name}/pause"
	AdminResumePath = "/api/v1/jobs/{name}/resume"
)

// MaxPauseReason bounds the reason of a pause, in bytes.
const MaxPauseReason = 1024

// maxPauseBody bounds the body of a pause request: the reason, JSON-escaped.
const maxPauseBody = 8 * MaxPauseReason

// ErrJobPaused is a run asked for while the job is paused: nothing runs
// and nothing is recorded. 409.
var ErrJobPaused = errors.New("job is paused")

// ErrBadRequest is a request the admin API refuses as written: a reason
// too long, a body that is not JSON, a backfill range reversed, in the
// future or too large. 400.
var ErrBadRequest = errors.New("bad request")

// JobState is what GET /api/v1/jobs shows of a job's run in progress and
// its pause.
type JobState struct {
	// Running is true while a run of the job is in progress on this
	// worker.
	Running bool `json:"running"`
	// Paused is true while the job is paused: its ticks are recorded
	// skipped. PausedReason is the reason given, PausedAt the time of the
	// pause (null when not paused) and PausedBy the replica that paused it
	// ("" on SQLite).
	Paused       bool       `json:"paused"`
	PausedReason string     `json:"paused_reason"`
	PausedAt     *time.Time `json:"paused_at"`
	PausedBy     string     `json:"paused_by"`
}

// Pauser is an Admin that pauses and resumes jobs. Their errors wrap
// ErrUnknownJob, ErrUnavailable or ErrBadRequest.
type Pauser interface {
	// Pause pauses the job with reason (at most MaxPauseReason bytes) and
	// returns its state then.
	Pause(name, reason string) (JobState, error)
	// Resume resumes the job, paused or not, and returns its state then.
	Resume(name string) (JobState, error)
}

// pauseAnswer is the body of a pause or resume that succeeded.
type pauseAnswer struct {
	Job string `json:"job"`
	JobState
}

// pauseRequest is the optional body of a pause.
type pauseRequest struct {
	Reason string `json:"reason"`
}

// readPauseReason reads the reason of a pause request: none without a
// body.
func readPauseReason(w http.ResponseWriter, r *http.Request) (string, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxPauseBody))
	if err != nil {
		return "", fmt.Errorf("%w: body: %w", ErrBadRequest, err)
	}
	if len(body) == 0 {
		return "", nil
	}
	var req pauseRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return "", fmt.Errorf("%w: body: want {\"reason\": \"...\"}: %w", ErrBadRequest, err)
	}
	if len(req.Reason) > MaxPauseReason {
		return "", fmt.Errorf("%w: reason: %d bytes, more than %d", ErrBadRequest, len(req.Reason), MaxPauseReason)
	}
	return req.Reason, nil
}

// handlePause serves the admin API's pause and resume (cross-origin
// requests refused by handleJobs).
func handlePause(mux *http.ServeMux, p Pauser) {
	mux.HandleFunc("POST "+AdminPausePath, func(w http.ResponseWriter, r *http.Request) {
		reason, err := readPauseReason(w, r)
		var st JobState
		if err == nil {
			st, err = p.Pause(r.PathValue("name"), reason)
		}
		writePauseAnswer(w, r.PathValue("name"), st, err)
	})
	mux.HandleFunc("POST "+AdminResumePath, func(w http.ResponseWriter, r *http.Request) {
		st, err := p.Resume(r.PathValue("name"))
		writePauseAnswer(w, r.PathValue("name"), st, err)
	})
}

func writePauseAnswer(w http.ResponseWriter, name string, st JobState, err error) {
	if err != nil {
		writeJSON(w, statusOf(err), errorBody{err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, pauseAnswer{Job: name, JobState: st})
}

// statusOf maps an Admin's error to the admin API's status code.
func statusOf(err error) int {
	switch {
	case errors.Is(err, ErrJobRunning), errors.Is(err, ErrJobPaused):
		return http.StatusConflict
	case errors.Is(err, ErrUnknownJob):
		return http.StatusNotFound
	case errors.Is(err, ErrUnavailable):
		return http.StatusServiceUnavailable
	case errors.Is(err, ErrBadRequest):
		return http.StatusBadRequest
	}
	return http.StatusInternalServerError
}
