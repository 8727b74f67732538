package worker_test

import (
	"context"
	"database/sql"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sqlworker/worker"
	"github.com/sqlworker/worker/internal/web"
	"github.com/sqlworker/worker/internal/workertest"
)

// Ensure Pause and Resume, in Go and through the admin API: refused before
// Start and after Stop (ErrNotRunning, 503) and for jobs not scheduled
// (ErrUnknownJob, 404); a paused job is listed paused, its ticks are
// counted skipped, and a run-now of it is 409; Resume undoes it.
func TestWorker_Pause(t *testing.T) {
	w, reg := MustNewWorker(t, MustParseConfig(t, workertest.BuiltinsOff+`
jobs:
  - {name: off, schedule: "@hourly", sql: "SELECT 1", enabled: false}
`))
	ran := make(chan struct{}, 100)
	if err := w.Register("every", "* * * * * *", func(context.Context, *sql.DB) (int64, error) {
		ran <- struct{}{}
		return 0, nil
	}); err != nil {
		t.Fatal(err)
	}
	srv := mustAdminServer(t, w, reg)
	ctx := context.Background()
	if err := w.Pause(ctx, "every", ""); !errors.Is(err, worker.ErrNotRunning) {
		t.Errorf("Pause before Start: got %v, want ErrNotRunning", err)
	}
	if got := call(t, srv, "POST", "/api/v1/jobs/every/pause", nil); got != 503 {
		t.Errorf("POST pause before Start: got %d, want 503", got)
	}
	if err := w.Start(ctx); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"nope", "off"} {
		if err := w.Pause(ctx, name, ""); !errors.Is(err, worker.ErrUnknownJob) {
			t.Errorf("Pause(%s): got %v, want ErrUnknownJob", name, err)
		}
		if got := call(t, srv, "POST", "/api/v1/jobs/"+name+"/pause", nil); got != 404 {
			t.Errorf("POST /api/v1/jobs/%s/pause: got %d, want 404", name, got)
		}
	}
	if err := w.Pause(ctx, "every", "backfill running"); err != nil {
		t.Fatal(err)
	}
	if p, ok := w.Paused("every"); !ok || p.Reason != "backfill running" || p.PausedAt.IsZero() || p.PausedBy != "" {
		t.Errorf("Paused: got %+v %v, want the reason, a time and no replica (SQLite)", p, ok)
	}
	var list struct{ Jobs []web.JobStatus }
	call(t, srv, "GET", "/api/v1/jobs", &list)
	for _, j := range list.Jobs {
		if j.Name == "every" && (!j.Paused || j.PausedReason != "backfill running" || j.PausedAt == nil) {
			t.Errorf("GET /api/v1/jobs: every: got %+v, want paused with its reason and time", j.JobState)
		}
	}
	if got := call(t, srv, "POST", "/api/v1/jobs/every/run", nil); got != 409 {
		t.Errorf("run-now of a paused job: got %d, want 409", got)
	}
	deadline := time.Now().Add(10 * time.Second)
	for sum(t, reg, "worker_job_ticks_skipped_total", map[string]string{"job_name": "every"}) < 2 {
		if time.Now().After(deadline) {
			t.Fatal("no 2 ticks skipped within 10 s of an every-second job paused")
		}
		time.Sleep(20 * time.Millisecond)
	}
	for len(ran) > 0 {
		<-ran // runs before the pause
	}
	if err := w.Resume(ctx, "every"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ran:
	case <-time.After(10 * time.Second):
		t.Fatal("no run within 10 s of the resume")
	}
	if _, ok := w.Paused("every"); ok {
		t.Error("Paused after Resume: got true, want false")
	}
	if err := w.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := w.Resume(ctx, "every"); !errors.Is(err, worker.ErrNotRunning) {
		t.Errorf("Resume after Stop: got %v, want ErrNotRunning", err)
	}
	if got := call(t, srv, "POST", "/api/v1/jobs/every/resume", nil); got != 503 {
		t.Errorf("POST resume after Stop: got %d, want 503", got)
	}
}

// Ensure the status page is served without the admin API, read-only:
// no buttons, and its actions and the pause API are not there.
func TestHandler_StatusPageReadOnly(t *testing.T) {
	w, reg := MustNewWorker(t, MustParseConfig(t, workertest.BuiltinsOff))
	h, err := w.Handler(worker.HandlerOptions{Gatherer: reg})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	if err := w.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(srv.URL + "/jobs")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `id="job-heartbeat"`) || strings.Contains(string(body), "<form") {
		t.Errorf("GET /jobs without the admin API: got %d, want 200 with the jobs and no form\n%s", resp.StatusCode, body)
	}
	for _, path := range []string{"/jobs/heartbeat/pause", "/api/v1/jobs/heartbeat/pause", "/api/v1/jobs/heartbeat/resume"} {
		if got := call(t, srv, "POST", path, nil); got != 404 && got != 405 {
			t.Errorf("POST %s without the admin API: got %d, want 404 or 405", path, got)
		}
	}
}
