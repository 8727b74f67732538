package web_test

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sqlworker/worker"
	"github.com/sqlworker/worker/web"
)

// Ensure LandingPage renders exporter-toolkit's page with the worker's
// links, its database escaped, and the pprof links only with Profiling.
func TestLandingPage(t *testing.T) {
	for _, profiling := range []bool{false, true} {
		h, err := web.LandingPage(worker.Landing{
			Name: "worker", Version: "v1", Database: "postgres://u:xxxxx@db/<app>", Profiling: profiling,
			Links: []worker.LandingLink{{Address: "/metrics", Text: "Metrics"}, {Address: "/api/v1/jobs", Text: "Jobs", Description: "admin API"}},
		})
		if err != nil {
			t.Fatal(err)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
		b, _ := io.ReadAll(rec.Body)
		page := string(b)
		for _, want := range []string{`href="/metrics">Metrics</a>`, `href="/api/v1/jobs">Jobs</a>: admin API`, "Version: v1", "<code>postgres://u:xxxxx@db/&lt;app&gt;</code>", "<style>"} {
			if !strings.Contains(page, want) {
				t.Errorf("profiling=%v: got no %s in\n%s", profiling, want, page)
			}
		}
		if got := strings.Contains(page, "debug/pprof/heap"); got != profiling {
			t.Errorf("profiling=%v: links debug/pprof/heap: got %v, want %v", profiling, got, profiling)
		}
	}
}

// Ensure CheckListenAddress refuses a vsock address without a numeric port
// and leaves TCP addresses to Listen.
func TestCheckListenAddress(t *testing.T) {
	for addr, ok := range map[string]bool{"vsock://:9847": true, "vsock://3:9847": true, "vsock://:http": false, "vsock://": false, "127.0.0.1:9847": true} {
		if err := web.CheckListenAddress(addr); (err == nil) != ok {
			t.Errorf("CheckListenAddress(%q): got %v, want ok=%v", addr, err, ok)
		}
	}
	l, err := web.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
}
