package web_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sqlworker/worker/internal/web"
)

// fakeAdmin answers RunNow by the job's name.
type fakeAdmin struct{}

func (fakeAdmin) Jobs() ([]web.JobStatus, error) {
	at := time.Date(2026, 12, 1, 14, 0, 0, 0, time.FixedZone("CET", 3600))
	return []web.JobStatus{
		{Name: "heartbeat", Kind: "builtin", Schedule: "@every 10s", Timeout: "5s", Enabled: true, NextRun: web.UTC(at),
			LastRun: &web.RunRecord{Job: "heartbeat", StartedAt: web.UTC(at), EndedAt: web.UTC(at), Result: "success", RowsAffected: 1}},
		{Name: "off", Kind: "sql", Schedule: "@hourly", Timeout: "0s"},
	}, nil
}

func (fakeAdmin) RunNow(name string) (*web.RunRecord, error) {
	switch name {
	case "ok":
		return &web.RunRecord{Job: name, Result: "failure", Error: "boom"}, nil
	case "busy":
		return &web.RunRecord{Job: name, Result: "skipped", Error: "previous run still running"}, fmt.Errorf("%q: %w", name, web.ErrJobRunning)
	case "late":
		return nil, fmt.Errorf("%w: shutting down", web.ErrUnavailable)
	}
	return nil, fmt.Errorf("%w: %q", web.ErrUnknownJob, name)
}

func send(t *testing.T, method, url string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// Ensure the admin API maps the Admin's errors to status codes, answers
// JSON with snake_case fields and UTC times, and is linked from the
// landing page.
func TestAdminAPI_Handler(t *testing.T) {
	h, err := web.NewHandler(web.Config{TelemetryPath: "/metrics", Gatherer: prometheus.NewRegistry(),
		Readiness: web.NewReadiness("starting"), Admin: fakeAdmin{}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()

	code, body := send(t, "GET", srv.URL+"/api/v1/jobs")
	if code != 200 {
		t.Fatalf("GET /api/v1/jobs: got %d, want 200", code)
	}
	for _, want := range []string{`"name": "heartbeat"`, `"next_run": "2026-12-01T13:00:00Z"`, `"last_run": {`,
		`"rows_affected": 1`, `"kind": "sql"`, `"enabled": false`, `"next_run": null`, `"last_run": null`, `"scheduled_at": null`} {
		if !strings.Contains(body, want) {
			t.Errorf("GET /api/v1/jobs: missing %s in\n%s", want, body)
		}
	}
	for _, tc := range []struct {
		method, name string
		want         int
		result       string
	}{
		{"POST", "ok", 200, "failure"},
		{"POST", "busy", 409, "skipped"},
		{"POST", "nope", 404, ""},
		{"POST", "late", 503, ""},
		{"GET", "ok", 405, ""},
	} {
		code, body := send(t, tc.method, srv.URL+"/api/v1/jobs/"+tc.name+"/run")
		if code != tc.want {
			t.Errorf("%s %s: got %d, want %d", tc.method, tc.name, code, tc.want)
		}
		if tc.result == "" {
			continue
		}
		var r map[string]any
		if err := json.Unmarshal([]byte(body), &r); err != nil {
			t.Fatalf("%s %s: %v in %q", tc.method, tc.name, err, body)
		}
		if got := r["result"]; got != tc.result {
			t.Errorf("%s %s result: got %v, want %v", tc.method, tc.name, got, tc.result)
		}
		for _, field := range []string{"job", "scheduled_at", "started_at", "ended_at", "result", "error", "rows_affected", "attempt", "jitter_ms"} {
			if _, ok := r[field]; !ok {
				t.Errorf("%s %s: field %s missing in %s", tc.method, tc.name, field, body)
			}
		}
	}
	if _, body := send(t, "GET", srv.URL+"/"); !strings.Contains(body, `api/v1/jobs">`) {
		t.Errorf("landing page: no link to api/v1/jobs in\n%s", body)
	}
}

var hrefRE = regexp.MustCompile(`href="([^"#]+)"`)

// Ensure the landing page links pprof only when it is served, and that
// every link it has answers.
func TestHandler_Pprof(t *testing.T) {
	for _, enabled := range []bool{false, true} {
		t.Run(fmt.Sprint("enabled=", enabled), func(t *testing.T) {
			ready := web.NewReadiness("starting")
			ready.Ready()
			h, err := web.NewHandler(web.Config{TelemetryPath: "/metrics", Gatherer: prometheus.NewRegistry(),
				Readiness: ready, EnablePprof: enabled})
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(h)
			defer srv.Close()
			_, page := send(t, "GET", srv.URL+"/")
			if got := strings.Contains(page, "debug/pprof/heap"); got != enabled {
				t.Errorf("landing page links debug/pprof/heap: got %v, want %v", got, enabled)
			}
			for _, m := range hrefRE.FindAllStringSubmatch(page, -1) {
				link := m[1]
				if strings.Contains(link, "://") {
					continue // pprof.me
				}
				link = strings.Replace(link, "seconds=60", "seconds=1", 1)
				if code, _ := send(t, "GET", srv.URL+"/"+strings.TrimPrefix(link, "/")); code != 200 {
					t.Errorf("landing page link %s: got %d, want 200", m[1], code)
				}
			}
			want := 404
			if enabled {
				want = 200
			}
			if got, _ := send(t, "GET", srv.URL+"/debug/pprof/heap"); got != want {
				t.Errorf("GET /debug/pprof/heap: got %d, want %d", got, want)
			}
		})
	}
}
