package worker_test

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	kgzip "github.com/klauspost/compress/gzip"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

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
	reg, w := newScrapeRegistryWorker(b, n)
	h, err := w.Handler(worker.HandlerOptions{Gatherer: reg})
	if err != nil {
		b.Fatal(err)
	}
	return h
}

// newScrapeRegistry returns the registry of a worker with n SQL jobs, as
// the daemon builds it, after Open.
func newScrapeRegistry(b *testing.B, n int) *prometheus.Registry {
	reg, _ := newScrapeRegistryWorker(b, n)
	return reg
}

func newScrapeRegistryWorker(b *testing.B, n int) (*prometheus.Registry, *worker.Worker) {
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
	return reg, w
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

// BenchmarkScrapeParts splits BenchmarkScrape with the default config (one
// SQL job and the built-ins) into its three stages, each against the same
// stage of the bare exporter: gather (every Collect, the conversion to
// dto.MetricFamily and the sort), encode (the gathered families to the text
// format Prometheus negotiates, uncompressed) and gzip (that text
// compressed by compress/gzip at the level given, and by
// klauspost/compress/gzip at level 1, as Handler does).
func BenchmarkScrapeParts(b *testing.B) {
	bare := prometheus.NewRegistry()
	bare.MustRegister(
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{ReportErrors: true}),
		collectors.NewGoCollector(),
	)
	reg := newScrapeRegistry(b, 1)
	format := expfmt.NegotiateAccept(http.Header{"Accept": {scrapeAccept}}, expfmt.DefaultAcceptedFormats()...)
	gather := func(g prometheus.Gatherer) func(b *testing.B) {
		return func(b *testing.B) {
			if _, err := g.Gather(); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("gather", func(b *testing.B) { floorbench.Pair(b, gather(bare), gather(reg)) })

	gathered := func(g prometheus.Gatherer) []*dto.MetricFamily {
		mfs, err := g.Gather()
		if err != nil {
			b.Fatal(err)
		}
		return mfs
	}
	bareMFs, regMFs := gathered(bare), gathered(reg)
	encode := func(mfs []*dto.MetricFamily, w io.Writer) {
		enc := expfmt.NewEncoder(w, format)
		for _, mf := range mfs {
			if err := enc.Encode(mf); err != nil {
				b.Fatal(err)
			}
		}
	}
	var buf bytes.Buffer
	encodeTo := func(mfs []*dto.MetricFamily) func(b *testing.B) {
		return func(b *testing.B) { buf.Reset(); encode(mfs, &buf) }
	}
	b.Run("encode", func(b *testing.B) { floorbench.Pair(b, encodeTo(bareMFs), encodeTo(regMFs)) })

	text := func(mfs []*dto.MetricFamily) []byte {
		var buf bytes.Buffer
		encode(mfs, &buf)
		return buf.Bytes()
	}
	bareText, regText := text(bareMFs), text(regMFs)
	b.Logf("text: bare %d bytes, worker %d bytes", len(bareText), len(regText))
	type gzipper interface {
		io.WriteCloser
		Reset(io.Writer)
	}
	type gzipCase struct {
		name string
		new  func(io.Writer) (gzipper, error)
	}
	var cases []gzipCase
	for _, level := range []int{gzip.DefaultCompression, gzip.BestSpeed, gzip.HuffmanOnly} {
		cases = append(cases, gzipCase{fmt.Sprintf("gzip=%d", level), func(w io.Writer) (gzipper, error) { return gzip.NewWriterLevel(w, level) }})
	}
	cases = append(cases, gzipCase{"gzip=klauspost-1", func(w io.Writer) (gzipper, error) { return kgzip.NewWriterLevel(w, kgzip.BestSpeed) }})
	for _, c := range cases {
		var out counter
		gz, err := c.new(&out)
		if err != nil {
			b.Fatal(err)
		}
		compress := func(p []byte) func(b *testing.B) {
			return func(b *testing.B) {
				out = 0
				gz.Reset(&out)
				if _, err := gz.Write(p); err != nil {
					b.Fatal(err)
				}
				if err := gz.Close(); err != nil {
					b.Fatal(err)
				}
			}
		}
		compress(bareText)(b)
		bareOut := out
		compress(regText)(b)
		b.Logf("%s: bare %d bytes, worker %d bytes", c.name, bareOut, out)
		b.Run(c.name, func(b *testing.B) { floorbench.Pair(b, compress(bareText), compress(regText)) })
	}
}

// counter is an io.Writer that counts the bytes written to it.
type counter int

func (c *counter) Write(p []byte) (int, error) { *c += counter(len(p)); return len(p), nil }
