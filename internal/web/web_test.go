package web_test

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/sqlworker/worker/internal/web"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// Ensure readiness combines the lifecycle, checks and faults, lists every
// cause, and becomes ready again when they clear.
func TestReadiness(t *testing.T) {
	r := web.NewReadiness("starting")
	if got, want := r.Reason(), "starting"; got != want {
		t.Fatalf("Reason: got %q, want %q", got, want)
	}
	r.Ready()
	if got := r.Reason(); got != "" {
		t.Fatalf("Reason when ready: got %q, want empty", got)
	}
	var checkErr error
	r.AddCheck("database", func() error { return checkErr })
	if changed := r.SetFault("heartbeat", errors.New("failure: database is\nlocked")); !changed {
		t.Error("SetFault of a new fault: got changed=false, want true")
	}
	if changed := r.SetFault("heartbeat", errors.New("failure: again")); changed {
		t.Error("SetFault of a known fault: got changed=true, want false")
	}
	r.SetFault("history", errors.New("cannot record job runs: database is locked"))
	checkErr = errors.New("database file was removed")
	want := "database: database file was removed\nheartbeat: failure: again\nhistory: cannot record job runs: database is locked"
	if got := r.Reason(); got != want {
		t.Fatalf("Reason:\n got %q\nwant %q", got, want)
	}
	checkErr = nil
	r.SetFault("heartbeat", nil)
	if changed := r.SetFault("history", nil); !changed {
		t.Error("SetFault(nil) of a fault: got changed=false, want true")
	}
	if got := r.Reason(); got != "" {
		t.Fatalf("Reason after the faults cleared: got %q, want empty", got)
	}
	r.SetFault("history", errors.New("x"))
	r.NotReady("shutting down")
	if got, want := r.Reason(), "shutting down"; got != want {
		t.Fatalf("Reason while shutting down: got %q, want %q", got, want)
	}
}

// Ensure /readyz answers 503 with the reasons while a fault is set, and
// nothing but the four paths is served.
func TestHandler(t *testing.T) {
	r := web.NewReadiness("starting")
	h, err := web.NewHandler(web.Config{TelemetryPath: "/metrics", Registry: prometheus.NewRegistry(), Readiness: r, Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	get := func(path string) (int, string) {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	r.Ready()
	r.SetFault("heartbeat", errors.New("failure: disk I/O error"))
	if code, body := get("/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "heartbeat: failure: disk I/O error") {
		t.Fatalf("GET /readyz with a fault: got %d %q, want 503 naming the fault", code, body)
	}
	r.SetFault("heartbeat", nil)
	for path, want := range map[string]int{"/readyz": 200, "/healthz": 200, "/metrics": 200, "/": 200,
		"/debug/pprof/": 404, "/metrics/x": 404, "/readyz/": 404, "/index.html": 404} {
		if got, _ := get(path); got != want {
			t.Errorf("GET %s: got %d, want %d", path, got, want)
		}
	}
	resp, err := http.Post(srv.URL+"/metrics", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got, want := resp.StatusCode, http.StatusMethodNotAllowed; got != want {
		t.Errorf("POST /metrics: got %d, want %d", got, want)
	}
}
