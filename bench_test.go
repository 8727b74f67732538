package worker_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sqlworker/worker"
	"github.com/sqlworker/worker/internal/floorbench"
)

// BenchmarkScrape measures one GET /metrics of the worker's registry, as
// the daemon builds it (process, Go and version collectors, then the
// worker's) and serves it (Handler), against a bare exporter: a registry
// with only the process and Go collectors behind promhttp.HandlerFor. Both
// are asked as Prometheus asks (OpenMetrics or text, gzip). With 1, 100 and
// 1,000 SQL jobs configured besides the built-in ones.
func BenchmarkScrape(b *testing.B) {
	for _, n := range []int{1, 100, 1000} {
		b.Run(fmt.Sprintf("jobs=%d", n), func(b *testing.B) {
			bare := prometheus.NewRegistry()
			bare.MustRegister(
				collectors.NewProcessCollector(collectors.ProcessCollectorOpts{ReportErrors: true}),
				collectors.NewGoCollector(),
			)
			floor := promhttp.HandlerFor(bare, promhttp.HandlerOpts{})
			h := newScrapeWorker(b, n)
			floorbench.Pair(b, func(b *testing.B) { scrape(b, floor) }, func(b *testing.B) { scrape(b, h) })
		})
	}
}

func newScrapeWorker(b *testing.B, n int) http.Handler {
	var y strings.Builder
	y.WriteString("jobs:\n")
	for i := range n {
		fmt.Fprintf(&y, "  - name: load_%04d\n    schedule: \"* * * * * *\"\n    sql: INSERT INTO t VALUES (1)\n", i)
	}
	cfg := MustParseConfig(b, y.String())
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{ReportErrors: true}),
		collectors.NewGoCollector(),
		versioncollector.NewCollector(worker.DefaultNamespace),
	)
	w, err := worker.New(worker.Options{Config: cfg, Registerer: reg})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { w.Close(b.Context()) })
	// Open, not Start: every series is there, and no run competes with
	// the scrapes.
	if err := w.Open(b.Context()); err != nil {
		b.Fatal(err)
	}
	h, err := w.Handler(worker.HandlerOptions{Registry: reg})
	if err != nil {
		b.Fatal(err)
	}
	return h
}

// scrapeAccept is what Prometheus 3 asks for by default.
const scrapeAccept = "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6," +
	"application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4," +
	"text/plain;version=0.0.4;q=0.3,*/*;q=0.2"

func scrape(b *testing.B, h http.Handler) {
	req, err := http.NewRequest(http.MethodGet, "/metrics", nil)
	if err != nil {
		b.Fatal(err)
	}
	req.Header.Set("Accept", scrapeAccept)
	req.Header.Set("Accept-Encoding", "gzip")
	var w discard
	h.ServeHTTP(&w, req)
	if w.code != 0 && w.code != http.StatusOK {
		b.Fatalf("GET /metrics: got status %d, want 200", w.code)
	}
}

// discard is a ResponseWriter that keeps only the status.
type discard struct {
	header http.Header
	code   int
}

func (d *discard) Header() http.Header {
	if d.header == nil {
		d.header = http.Header{}
	}
	return d.header
}
func (d *discard) Write(p []byte) (int, error) { return len(p), nil }
func (d *discard) WriteHeader(code int)        { d.code = code }
