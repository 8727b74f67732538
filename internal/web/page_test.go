package web_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sqlworker/worker/internal/web"
)

// pageAdmin is an Admin and Pauser over a list of jobs held in memory.
type pageAdmin struct {
	mu     sync.Mutex
	jobs   []web.JobStatus
	runs   map[string][]web.RunRecord
	paused map[string]string
}

func (a *pageAdmin) Jobs() ([]web.JobStatus, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := append([]web.JobStatus(nil), a.jobs...)
	for i := range out {
		reason, ok := a.paused[out[i].Name]
		out[i].Paused, out[i].PausedReason = ok, reason
	}
	return out, nil
}

func (a *pageAdmin) RecentRuns(_ context.Context, name string, n int) ([]web.RunRecord, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	r := a.runs[name]
	return r[:min(n, len(r))], nil
}

func (a *pageAdmin) known(name string) bool {
	for _, j := range a.jobs {
		if j.Name == name && j.Enabled {
			return true
		}
	}
	return false
}

func (a *pageAdmin) RunNow(name string) (*web.RunRecord, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	switch _, paused := a.paused[name]; {
	case !a.known(name):
		return nil, fmt.Errorf("%w: %q", web.ErrUnknownJob, name)
	case paused:
		return nil, fmt.Errorf("%q: %w", name, web.ErrJobPaused)
	}
	return &web.RunRecord{Job: name, Result: "success"}, nil
}

func (a *pageAdmin) Pause(name, reason string) (web.JobState, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.known(name) {
		return web.JobState{}, fmt.Errorf("%w: %q", web.ErrUnknownJob, name)
	}
	if len(reason) > web.MaxPauseReason {
		return web.JobState{}, fmt.Errorf("%w: reason too long", web.ErrBadRequest)
	}
	a.paused[name] = reason
	return web.JobState{Paused: true, PausedReason: reason}, nil
}

func (a *pageAdmin) Resume(name string) (web.JobState, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.known(name) {
		return web.JobState{}, fmt.Errorf("%w: %q", web.ErrUnknownJob, name)
	}
	delete(a.paused, name)
	return web.JobState{}, nil
}

const evil = `<script>alert(1)</script>`

func newPageAdmin() *pageAdmin {
	at := web.UTC(time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC))
	end := web.UTC(at.Add(1500 * time.Millisecond))
	return &pageAdmin{
		jobs: []web.JobStatus{
			{Name: "rollup", Kind: "sql", Schedule: "@every 1m", Enabled: true, NextRun: at},
			{Name: "busy", Kind: "sql", Schedule: "@hourly", Enabled: true, JobState: web.JobState{Running: true}},
			{Name: "off", Kind: "sql", Schedule: "@hourly"},
		},
		runs: map[string][]web.RunRecord{
			"rollup": {{Job: "rollup", ScheduledAt: at, StartedAt: at, EndedAt: end, Result: "failure", Error: evil, Attempt: 1}},
		},
		paused: map[string]string{},
	}
}

func newPageServer(t *testing.T, a *pageAdmin, actions bool) *httptest.Server {
	t.Helper()
	c := web.Config{TelemetryPath: "/metrics", Gatherer: prometheus.NewRegistry(), Readiness: web.NewReadiness("starting"), Jobs: a}
	if actions {
		c.Admin = a
	}
	h, err := web.NewHandler(c)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// noRedirect is a client that shows the page's redirects instead of
// following them.
var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func postForm(t *testing.T, c *http.Client, u string, form url.Values, header http.Header) (status int, h http.Header) {
	t.Helper()
	req, err := http.NewRequest("POST", u, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header
}

// Ensure the status page shows each job's state and runs, escapes what
// it shows (a run's error), has no script, and offers its buttons only
// with the admin API.
func TestPage_Render(t *testing.T) {
	for _, actions := range []bool{false, true} {
		t.Run(fmt.Sprint("actions=", actions), func(t *testing.T) {
			srv := newPageServer(t, newPageAdmin(), actions)
			code, page := send(t, "GET", srv.URL+web.PagePath)
			if code != 200 {
				t.Fatalf("GET /jobs: got %d, want 200", code)
			}
			for _, want := range []string{
				`id="job-rollup" data-state="idle"`, `id="job-busy" data-state="running"`, `id="job-off" data-state="disabled"`,
				`&lt;script&gt;alert(1)&lt;/script&gt;`, `2026-12-07 10:00:00Z`, `1.5s`, `class="r-failure"`,
			} {
				if !strings.Contains(page, want) {
					t.Errorf("page: want %q in it\n%s", want, page)
				}
			}
			if strings.Contains(page, evil) || strings.Contains(page, "<script") {
				t.Errorf("page: got a script element, want none\n%s", page)
			}
			if got := strings.Contains(page, `action="/jobs/rollup/pause"`); got != actions {
				t.Errorf("page has the pause form: got %v, want %v", got, actions)
			}
			if !actions {
				if code, _ := send(t, "POST", srv.URL+"/jobs/rollup/pause"); code != http.StatusMethodNotAllowed && code != 404 {
					t.Errorf("POST /jobs/rollup/pause without the admin API: got %d, want 404 or 405", code)
				}
			}
			_, landing := send(t, "GET", srv.URL+"/")
			if !strings.Contains(landing, `href="/jobs"`) {
				t.Errorf("landing page: want a link to /jobs\n%s", landing)
			}
		})
	}
}

// Ensure the page's forms pause, resume and run a job and redirect back
// with a notice in the page's own words; that a run of a paused job and an
// action on an unknown job say why they did nothing; and that a
// cross-origin POST is refused.
func TestPage_Actions(t *testing.T) {
	a := newPageAdmin()
	srv := newPageServer(t, a, true)
	for _, tc := range []struct {
		path, reason, wantNotice string
		wantPaused               bool
	}{
		{"/jobs/rollup/pause", "disk <full>", "paused", true},
		{"/jobs/rollup/run", "", "run: not run: the job is paused", true},
		{"/jobs/rollup/resume", "", "resumed", false},
		{"/jobs/rollup/run", "", "ran: success", false},
		{"/jobs/nope/pause", "", "", false}, // a notice names only a job of the list
		{"/jobs/rollup/pause", strings.Repeat("x", web.MaxPauseReason+1), "pause: refused: the reason is too long", false},
	} {
		code, h := postForm(t, noRedirect, srv.URL+tc.path, url.Values{"reason": {tc.reason}}, nil)
		loc := h.Get("Location")
		if code != http.StatusSeeOther || !strings.HasPrefix(loc, "/jobs?") {
			t.Fatalf("POST %s: got %d to %q, want 303 to /jobs?...", tc.path, code, loc)
		}
		_, page := send(t, "GET", srv.URL+loc)
		if want := "</code>: " + tc.wantNotice + "</p>"; tc.wantNotice != "" && !strings.Contains(page, want) {
			t.Errorf("POST %s: page after: want the notice %q\n%s", tc.path, want, page)
		}
		if tc.wantNotice == "" && strings.Contains(page, `id="notice"`) {
			t.Errorf("POST %s: page after: got a notice, want none\n%s", tc.path, page)
		}
		if got := strings.Contains(page, `id="job-rollup" data-state="paused"`); got != tc.wantPaused {
			t.Errorf("POST %s: rollup paused on the page: got %v, want %v", tc.path, got, tc.wantPaused)
		}
	}
	if code, _ := postForm(t, noRedirect, srv.URL+"/jobs/rollup/pause", nil, http.Header{"Sec-Fetch-Site": {"cross-site"}}); code != http.StatusForbidden {
		t.Errorf("cross-site POST: got %d, want 403", code)
	}
	if _, paused := a.paused["rollup"]; paused {
		t.Errorf("cross-site POST paused the job")
	}
	// A crafted link cannot put words of its own on the page.
	for _, q := range []string{"job=rollup&action=pause&status=you+are+hacked", "job=you+are+hacked&action=pause&status=ok"} {
		_, page := send(t, "GET", srv.URL+"/jobs?"+q)
		if strings.Contains(page, "hacked") || strings.Contains(page, `id="notice"`) {
			t.Errorf("crafted notice %s: got it on the page\n%s", q, page)
		}
	}
}

// Ensure the admin API's pause and resume answer 200 with the job's
// state, 400 for a reason too long or a body that is not JSON, 404 for an
// unknown job, and that a run-now of a paused job is 409.
func TestPauseAPI(t *testing.T) {
	srv := newPageServer(t, newPageAdmin(), true)
	for _, tc := range []struct {
		path, body string
		want       int
		wantBody   string
	}{
		{"/api/v1/jobs/rollup/pause", `{"reason": "disk full"}`, 200, `"paused_reason": "disk full"`},
		{"/api/v1/jobs/rollup/run", "", 409, "job is paused"},
		{"/api/v1/jobs/rollup/resume", "", 200, `"paused": false`},
		{"/api/v1/jobs/rollup/pause", "", 200, `"paused": true`},
		{"/api/v1/jobs/rollup/pause", `{"reason": "` + strings.Repeat("x", web.MaxPauseReason+1) + `"}`, 400, "more than 1024"},
		{"/api/v1/jobs/rollup/pause", `reason=x`, 400, "want {"},
		{"/api/v1/jobs/nope/pause", "", 404, "unknown job"},
		{"/api/v1/jobs/nope/resume", "", 404, "unknown job"},
	} {
		resp, err := http.Post(srv.URL+tc.path, "application/json", strings.NewReader(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.want || !strings.Contains(string(b), tc.wantBody) {
			t.Errorf("POST %s %.40q: got %d %s, want %d with %q", tc.path, tc.body, resp.StatusCode, b, tc.want, tc.wantBody)
		}
	}
	// A form that another site posts, with the operator's credentials.
	for _, path := range []string{"/api/v1/jobs/rollup/pause", "/api/v1/jobs/rollup/resume", "/api/v1/jobs/rollup/run", "/api/v1/jobs/rollup/backfill"} {
		code, _ := postForm(t, noRedirect, srv.URL+path, nil, http.Header{"Origin": {"https://evil.example"}, "Sec-Fetch-Site": {"cross-site"}})
		if code != http.StatusForbidden {
			t.Errorf("cross-site POST %s: got %d, want 403", path, code)
		}
	}
}
