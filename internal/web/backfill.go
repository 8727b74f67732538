package web

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// AdminBackfillPath is the admin API's backfill of a job.
const AdminBackfillPath = "/api/v1/jobs/{name}/backfill"

// maxBackfillBody bounds the body of a backfill request.
const maxBackfillBody = 4 << 10

// BackfillRequest is the body of POST /api/v1/jobs/{name}/backfill: the
// range of ticks, from and to included, as RFC 3339 times.
type BackfillRequest struct {
	From   time.Time `json:"-"`
	To     time.Time `json:"-"`
	DryRun bool      `json:"dry_run"` // list the ticks, run nothing
	Rerun  bool      `json:"rerun"`   // run the ticks that succeeded before too
}

// BackfillResult is the answer to a backfill: each tick of the range,
// oldest first, with what became of it, and the count of each status.
type BackfillResult struct {
	Job    string         `json:"job"`
	DryRun bool           `json:"dry_run"`
	Counts map[string]int `json:"counts"` // by status
	Ticks  []BackfillTick `json:"ticks"`
}

// BackfillTick is a tick of a backfill: Status is would_run (dry run),
// done (a success row exists: left alone), ran (Run says how it ended),
// skipped (the job's overlap policy skipped it), elsewhere (another
// replica has the tick) or not_run (the backfill stopped first).
type BackfillTick struct {
	ScheduledAt *time.Time `json:"scheduled_at"`
	Status      string     `json:"status"`
	Run         *RunRecord `json:"run,omitempty"`
}

// Backfiller is an Admin that backfills: the admin API serves
// AdminBackfillPath when its Admin is one.
type Backfiller interface {
	// Backfill runs (or, dry, lists) the job's ticks in the range and
	// returns once every one was run. Its error wraps ErrUnknownJob,
	// ErrBadRequest or ErrUnavailable.
	Backfill(ctx context.Context, name string, req BackfillRequest) (*BackfillResult, error)
}

// readBackfill decodes a backfill request body; its error names the field.
func readBackfill(r *http.Request) (BackfillRequest, error) {
	var body struct {
		From   *string `json:"from"`
		To     *string `json:"to"`
		DryRun bool    `json:"dry_run"`
		Rerun  bool    `json:"rerun"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, maxBackfillBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		return BackfillRequest{}, fmt.Errorf("%w: body: want a JSON object with from, to (RFC 3339), dry_run and rerun: %v", ErrBadRequest, err)
	}
	req := BackfillRequest{DryRun: body.DryRun, Rerun: body.Rerun}
	for _, f := range []struct {
		name string
		v    *string
		t    *time.Time
	}{{"from", body.From, &req.From}, {"to", body.To, &req.To}} {
		if f.v == nil {
			return req, fmt.Errorf("%w: %s: required", ErrBadRequest, f.name)
		}
		t, err := time.Parse(time.RFC3339Nano, *f.v)
		if err != nil {
			return req, fmt.Errorf("%w: %s: want an RFC 3339 time such as 2026-12-07T02:00:00Z, got %s", ErrBadRequest, f.name, Quote(*f.v))
		}
		*f.t = t
	}
	return req, nil
}

// handleBackfill serves AdminBackfillPath when a is a Backfiller.
func handleBackfill(mux *http.ServeMux, a Admin) {
	b, ok := a.(Backfiller)
	if !ok {
		return
	}
	mux.HandleFunc("POST "+AdminBackfillPath, func(w http.ResponseWriter, r *http.Request) {
		req, err := readBackfill(r)
		var res *BackfillResult
		if err == nil {
			res, err = b.Backfill(r.Context(), r.PathValue("name"), req)
		}
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, res)
	})
}

// writeError answers an admin API error as {"error": "..."}, with the
// status its sentinel maps to (statusOf).
func writeError(w http.ResponseWriter, err error) {
	writeJSON(w, statusOf(err), errorBody{err.Error()})
}
