package web_test

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"
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
	h, err := web.NewHandler(web.Config{TelemetryPath: "/metrics", Gatherer: prometheus.NewRegistry(), Readiness: r, Version: "test"})
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

// Ensure SetFaultAt follows the newest observation: a fault from an older
// run arriving after a newer run cleared it is ignored.
func TestReadiness_SetFaultAt_NewestWins(t *testing.T) {
	r := web.NewReadiness("starting")
	r.Ready()
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	newer, older := t0.Add(10*time.Second), t0
	if changed := r.SetFaultAt("heartbeat", newer, nil); changed {
		t.Errorf("SetFaultAt(newer, nil) on no fault: got changed=true, want false")
	}
	if changed := r.SetFaultAt("heartbeat", older, errors.New("timeout: context deadline exceeded")); changed {
		t.Errorf("SetFaultAt(older, err) after a newer success: got changed=true, want false")
	}
	if got := r.Reason(); got != "" {
		t.Fatalf("Reason after an older failure arrived late: got %q, want empty", got)
	}
	if changed := r.SetFaultAt("heartbeat", newer.Add(time.Second), errors.New("failure: disk I/O error")); !changed {
		t.Errorf("SetFaultAt(newest, err): got changed=false, want true")
	}
	if changed := r.SetFaultAt("heartbeat", newer, nil); changed {
		t.Errorf("SetFaultAt(older, nil) after a newer failure: got changed=true, want false")
	}
	if got, want := r.Reason(), "heartbeat: failure: disk I/O error"; got != want {
		t.Fatalf("Reason: got %q, want %q", got, want)
	}
	// Names are ordered independently.
	r.SetFaultAt("job a", older, errors.New("failure: database or disk is full"))
	if got, want := r.Reason(), "heartbeat: failure: disk I/O error\njob a: failure: database or disk is full"; got != want {
		t.Fatalf("Reason with two faults: got %q, want %q", got, want)
	}
}

// blockingCollector holds every Collect until release is closed, so that a
// test can keep a scrape in flight.
type blockingCollector struct {
	entered chan struct{}
	release chan struct{}
	desc    *prometheus.Desc
}

func (c *blockingCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }
func (c *blockingCollector) Collect(ch chan<- prometheus.Metric) {
	c.entered <- struct{}{}
	<-c.release
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, 1)
}

// Ensure the in-flight limit answers scrapes over it with 503 and that
// promhttp_metric_handler_requests_total counts them under code="503", and
// that MaxRequests 0 means no limit.
func TestHandler_MaxRequests(t *testing.T) {
	for _, tc := range []struct {
		name        string
		maxRequests int
		wantCode    int // of the scrape made while one is in flight
	}{
		{"Limit1", 1, http.StatusServiceUnavailable},
		{"NoLimit", 0, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			c := &blockingCollector{
				entered: make(chan struct{}, 2),
				release: make(chan struct{}),
				desc:    prometheus.NewDesc("test_blocking", "Held until released.", nil, nil),
			}
			reg.MustRegister(c)
			r := web.NewReadiness("starting")
			h, err := web.NewHandler(web.Config{TelemetryPath: "/metrics", Gatherer: reg, Registerer: reg, Readiness: r, Version: "test", MaxRequests: tc.maxRequests})
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(h)
			defer srv.Close()
			first := make(chan int, 1)
			go func() {
				resp, err := http.Get(srv.URL + "/metrics")
				if err != nil {
					first <- 0
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				first <- resp.StatusCode
			}()
			<-c.entered // the first scrape is in flight and holds its slot
			second := make(chan int, 1)
			go func() {
				resp, err := http.Get(srv.URL + "/metrics")
				if err != nil {
					second <- 0
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				second <- resp.StatusCode
			}()
			if tc.wantCode == http.StatusOK {
				<-c.entered // without a limit the second scrape collects too
				close(c.release)
			}
			// With the limit, the second scrape is answered without collecting.
			if got := <-second; got != tc.wantCode {
				t.Fatalf("second concurrent scrape: got %d, want %d", got, tc.wantCode)
			}
			if tc.wantCode != http.StatusOK {
				close(c.release)
			}
			if code := <-first; code != http.StatusOK {
				t.Fatalf("first scrape: got %d, want 200", code)
			}
			srv.Close() // waits for the handlers, which count after responding
			mfs, err := reg.Gather()
			if err != nil {
				t.Fatal(err)
			}
			counts := map[string]float64{}
			for _, mf := range mfs {
				if mf.GetName() != "promhttp_metric_handler_requests_total" {
					continue
				}
				for _, m := range mf.GetMetric() {
					counts[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
				}
			}
			want := map[string]float64{"200": 2, "500": 0, "503": 0}
			if tc.wantCode == http.StatusServiceUnavailable {
				want = map[string]float64{"200": 1, "500": 0, "503": 1}
			}
			for code, n := range want {
				if counts[code] != n {
					t.Errorf("promhttp_metric_handler_requests_total{code=%q}: got %v, want %v", code, counts[code], n)
				}
			}
			if got := testutil.CollectAndCount(reg, "promhttp_metric_handler_requests_in_flight"); got != 1 {
				t.Errorf("promhttp_metric_handler_requests_in_flight series: got %d, want 1", got)
			}
		})
	}
}

// Ensure /metrics chooses gzip or identity as a stock promhttp handler does
// for the same Accept-Encoding, and that a gzipped body decompresses to the
// exposition.
func TestHandler_MetricsCompression(t *testing.T) {
	reg := prometheus.NewRegistry()
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "test_gauge", Help: "A gauge."})
	g.Set(42)
	reg.MustRegister(g)
	h, err := web.NewHandler(web.Config{TelemetryPath: "/metrics", Gatherer: reg, Registerer: reg, Readiness: web.NewReadiness("starting"), Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	stockReg := prometheus.NewRegistry()
	stockReg.MustRegister(g)
	stock := httptest.NewServer(promhttp.HandlerFor(stockReg, promhttp.HandlerOpts{}))
	defer stock.Close()
	client := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	defer client.CloseIdleConnections()
	get := func(url, acceptEncoding string) (int, http.Header, []byte) {
		req, err := http.NewRequest(http.MethodGet, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		if acceptEncoding != "" {
			req.Header.Set("Accept-Encoding", acceptEncoding)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, resp.Header, b
	}
	for _, tc := range []struct {
		acceptEncoding string
		want           string // Content-Encoding
	}{
		{"gzip", "gzip"},
		{"", ""},
		{"gzip;q=0", ""},
		{"identity, gzip", ""},
		{"gzip, identity;q=0.5", "gzip"},
		{"*", ""},
		{"*;q=0.5, gzip", "gzip"},
		{"deflate, gzip;q=1.0, *;q=0.5", "gzip"},
		{"br", ""},
	} {
		code, header, body := get(srv.URL+"/metrics", tc.acceptEncoding)
		if code != http.StatusOK {
			t.Fatalf("Accept-Encoding %q: got status %d, want 200", tc.acceptEncoding, code)
		}
		if got := header.Get("Content-Encoding"); got != tc.want {
			t.Errorf("Accept-Encoding %q: got Content-Encoding %q, want %q", tc.acceptEncoding, got, tc.want)
		}
		_, stockHeader, _ := get(stock.URL, tc.acceptEncoding)
		if got, want := header.Get("Content-Encoding"), stockHeader.Get("Content-Encoding"); got != want {
			t.Errorf("Accept-Encoding %q: got Content-Encoding %q, want promhttp's %q", tc.acceptEncoding, got, want)
		}
		if got, want := header.Values("Vary"), stockHeader.Values("Vary"); strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("Accept-Encoding %q: got Vary %q, want promhttp's %q", tc.acceptEncoding, got, want)
		}
		if header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(bytes.NewReader(body))
			if err != nil {
				t.Fatalf("Accept-Encoding %q: %v", tc.acceptEncoding, err)
			}
			if body, err = io.ReadAll(zr); err != nil {
				t.Fatalf("Accept-Encoding %q: %v", tc.acceptEncoding, err)
			}
		}
		if !strings.Contains(string(body), "\ntest_gauge 42\n") {
			t.Errorf("Accept-Encoding %q: got body %q, want the line test_gauge 42", tc.acceptEncoding, body)
		}
	}
}
