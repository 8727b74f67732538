package web

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"time"
)

// PagePath is the status page: every job with its state, next run and last
// runs, served by html/template with no script and no external asset.
const PagePath = "/jobs"

// PageRuns is how many of each job's newest job_runs rows the page shows.
const PageRuns = 5

// pageRunWait is how long the page's run button waits for the run to end
// before it answers that the run started.
const pageRunWait = 2 * time.Second

// maxPageForm bounds the body of the page's forms: a pause reason.
const maxPageForm = 4 * MaxPauseReason

// JobSource is what the status page reads.
type JobSource interface {
	// Jobs returns every job, disabled ones included.
	Jobs() ([]JobStatus, error)
	// RecentRuns returns the job's newest n runs of job_runs, newest first.
	RecentRuns(ctx context.Context, name string, n int) ([]RunRecord, error)
}

//go:embed page.html
var pageHTML string

var pageTemplate = template.Must(template.New("page").Funcs(template.FuncMap{
	"pathEscape": url.PathEscape,
	"when":       when,
	"took":       took,
}).Parse(pageHTML))

// pageJob is a job as the page shows it.
type pageJob struct {
	JobStatus
	State   string // disabled, paused, running or idle
	Runs    []RunRecord
	RunsErr string
}

// pageData is what the template renders.
type pageData struct {
	Jobs    []pageJob
	Err     string
	Actions bool // the admin API is on: the page has its buttons
	Notice  *notice
	Now     string
}

// notice says what the last action did; only the page's own words, so
// that a crafted link cannot make the page say anything else.
type notice struct {
	Job, Text string
	Bad       bool
}

func when(t *time.Time) string {
	if t == nil {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}

func took(r RunRecord) string {
	if r.StartedAt == nil || r.EndedAt == nil {
		return "—"
	}
	d := r.EndedAt.Sub(*r.StartedAt)
	if d < time.Millisecond {
		return "<1ms"
	}
	return d.Round(time.Millisecond).String()
}

func state(j JobStatus) string {
	switch {
	case !j.Enabled:
		return "disabled"
	case j.Paused:
		return "paused"
	case j.Running:
		return "running"
	}
	return "idle"
}

// handlePage serves the status page, and, when a is set, its actions:
// POST /jobs/{name}/run, pause and resume, which redirect back to the page
// (303) with a notice of what they did. The forms work without script; a
// cross-origin POST is refused (a form behind basic auth is open to
// cross-site requests otherwise).
func handlePage(mux *http.ServeMux, src JobSource, a Admin) {
	mux.HandleFunc("GET "+PagePath, func(w http.ResponseWriter, r *http.Request) {
		d := pageData{Actions: a != nil, Notice: readNotice(r.URL.Query()), Now: when(UTC(time.Now()))}
		list, err := src.Jobs()
		if err != nil {
			d.Err = err.Error()
		}
		known := false
		for _, j := range list {
			known = known || d.Notice != nil && j.Name == d.Notice.Job
			pj := pageJob{JobStatus: j, State: state(j)}
			runs, err := src.RecentRuns(r.Context(), j.Name, PageRuns)
			if err != nil {
				pj.RunsErr = err.Error()
			}
			pj.Runs = runs
			d.Jobs = append(d.Jobs, pj)
		}
		if !known {
			d.Notice = nil // only about a job of the list: a crafted link names no other
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'")
		if err := pageTemplate.Execute(w, d); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	})
	if a == nil {
		return
	}
	p, _ := a.(Pauser)
	mux.HandleFunc("POST "+PagePath+"/{name}/{action}", func(w http.ResponseWriter, r *http.Request) {
		name, action := r.PathValue("name"), r.PathValue("action")
		q := url.Values{"job": {name}, "action": {action}}
		var err error
		switch {
		case action == "run":
			err = pageRun(a, name, q)
		case action == "pause" && p != nil:
			r.Body = http.MaxBytesReader(w, r.Body, maxPageForm)
			if err = r.ParseForm(); err != nil {
				err = fmt.Errorf("%w: %w", ErrBadRequest, err)
				break
			}
			_, err = p.Pause(name, r.PostForm.Get("reason"))
		case action == "resume" && p != nil:
			_, err = p.Resume(name)
		default:
			http.NotFound(w, r)
			return
		}
		q.Set("status", outcome(err))
		http.Redirect(w, r, PagePath+"?"+q.Encode(), http.StatusSeeOther)
	})
}

// pageRun runs the job now, waiting pageRunWait for it to end; a run that
// goes on after that is left running, and q says it started.
func pageRun(a Admin, name string, q url.Values) error {
	type ran struct {
		rec *RunRecord
		err error
	}
	done := make(chan ran, 1)
	go func() {
		rec, err := a.RunNow(name)
		done <- ran{rec, err}
	}()
	t := time.NewTimer(pageRunWait)
	defer t.Stop()
	select {
	case o := <-done:
		if o.err == nil && o.rec != nil {
			q.Set("result", o.rec.Result)
		}
		return o.err
	case <-t.C:
		q.Set("result", "started")
		return nil
	}
}

// outcome names an action's error for the page's notice.
func outcome(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, ErrJobPaused):
		return "paused"
	case errors.Is(err, ErrJobRunning):
		return "running"
	}
	switch statusOf(err) {
	case http.StatusNotFound:
		return "unknown"
	case http.StatusServiceUnavailable:
		return "unavailable"
	case http.StatusBadRequest:
		return "bad"
	}
	return "error"
}

// notices are the page's words for each action's outcome.
var notices = map[string]string{
	"ok":          "done",
	"paused":      "not run: the job is paused",
	"running":     "not run: its previous run is still going",
	"unknown":     "not scheduled (no such job, or disabled)",
	"unavailable": "the worker is not running (starting or shutting down)",
	"bad":         "refused: the reason is too long",
	"error":       "failed; see the worker's log",
}

var results = map[string]string{
	"success": "ran: success", "failure": "ran: failure", "skipped": "skipped", "panic": "ran: panic",
	"timeout": "ran: timeout", "cancelled": "ran: cancelled", "started": "started; still running",
}

func readNotice(q url.Values) *notice {
	job, action, status := q.Get("job"), q.Get("action"), q.Get("status")
	text, ok := notices[status]
	if job == "" || !ok || (action != "run" && action != "pause" && action != "resume") {
		return nil
	}
	n := &notice{Job: job, Text: action + ": " + text, Bad: status != "ok"}
	switch {
	case status != "ok":
	case action == "pause":
		n.Text = "paused"
	case action == "resume":
		n.Text = "resumed"
	case results[q.Get("result")] != "":
		n.Text = results[q.Get("result")]
		n.Bad = q.Get("result") != "success" && q.Get("result") != "started"
	}
	return n
}
