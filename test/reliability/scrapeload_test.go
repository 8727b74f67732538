package reliability_test

import (
	"context"
	"io"
	"math"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/sqlworker/worker/internal/workertest"
)

// Scrape load: 200 clients on loopback for 10 s.
const (
	scrapeClients  = 200
	scrapeDuration = 10 * time.Second
	scrapeLimit    = 40 // --web.max-requests, the default, passed explicitly
)

// buckets returns a histogram family's cumulative buckets summed over its
// series, by upper bound, and the sample count.
func buckets(mf *dto.MetricFamily) (map[float64]uint64, uint64) {
	out := map[float64]uint64{}
	var count uint64
	for _, m := range mf.GetMetric() {
		h := m.GetHistogram()
		count += h.GetSampleCount()
		for _, b := range h.GetBucket() {
			out[b.GetUpperBound()] += b.GetCumulativeCount()
		}
	}
	return out, count
}

// quantileBound returns the upper bound of the first bucket holding the
// q-quantile of the samples between two scrapes of a histogram, and how
// many samples there were; +Inf when it is above every bucket.
func quantileBound(before, after *dto.MetricFamily, q float64) (float64, uint64) {
	b0, n0 := buckets(before)
	b1, n1 := buckets(after)
	n := n1 - n0
	var bounds []float64
	for ub := range b1 {
		bounds = append(bounds, ub)
	}
	sort.Float64s(bounds)
	for _, ub := range bounds {
		if float64(b1[ub]-b0[ub]) >= q*float64(n) {
			return ub, n
		}
	}
	return math.Inf(1), n
}

// Ensure 200 concurrent scrapers neither delay the jobs nor go uncounted:
// job start delays stay low, every scrape over --web.max-requests is a 503
// that promhttp_metric_handler_requests_total{code="503"} counts, and
// nothing else fails. The figures are logged, not asserted, but for a
// generous bound on the start delay.
func TestScrape_ConcurrentClients(t *testing.T) {
	w := StartWorker(t, workertest.Options{Config: workertest.EverySecond, LogLevel: "info",
		Args: []string{"--web.max-requests=40"}})
	w.WaitFor(t, "running jobs", 30*time.Second, func() bool {
		return workertest.Sum(w.Scrape(t)["worker_job_start_delay_seconds"], nil) >= 6
	})
	before := w.Scrape(t)

	tr := &http.Transport{MaxIdleConns: scrapeClients, MaxIdleConnsPerHost: scrapeClients}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), scrapeDuration)
	defer cancel()
	var ok, unavailable, other, failed atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range scrapeClients {
		wg.Go(func() {
			for ctx.Err() == nil {
				resp, err := client.Get(w.URL("/metrics"))
				if err != nil {
					failed.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				switch resp.StatusCode {
				case http.StatusOK:
					ok.Add(1)
				case http.StatusServiceUnavailable:
					unavailable.Add(1)
				default:
					other.Add(1)
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)

	// promhttp counts a scrape after answering it: wait for the last ones.
	var after map[string]*dto.MetricFamily
	w.WaitFor(t, "counting every 503", 30*time.Second, func() bool {
		after = w.Scrape(t)
		return workertest.Sum(after["promhttp_metric_handler_requests_total"], map[string]string{"code": "503"})-
			workertest.Sum(before["promhttp_metric_handler_requests_total"], map[string]string{"code": "503"}) == float64(unavailable.Load())
	})
	counted200 := workertest.Sum(after["promhttp_metric_handler_requests_total"], map[string]string{"code": "200"}) -
		workertest.Sum(before["promhttp_metric_handler_requests_total"], map[string]string{"code": "200"})
	if counted200 < float64(ok.Load()) {
		t.Errorf("promhttp_metric_handler_requests_total{code=\"200\"} rise: got %v, want ≥ %d (the 200s the clients saw)", counted200, ok.Load())
	}
	if n := failed.Load(); n != 0 {
		t.Errorf("requests that failed without a status: got %d, want 0", n)
	}
	if n := other.Load(); n != 0 {
		t.Errorf("responses other than 200 and 503: got %d, want 0", n)
	}
	if ok.Load() == 0 {
		t.Fatal("no scrape answered 200 under load")
	}

	p99, samples := quantileBound(before["worker_job_start_delay_seconds"], after["worker_job_start_delay_seconds"], 0.99)
	p50, _ := quantileBound(before["worker_job_start_delay_seconds"], after["worker_job_start_delay_seconds"], 0.50)
	if samples < 10 {
		t.Fatalf("job runs during the load: got %d, want ≥ 10", samples)
	}
	// A generous sanity bound: a second late is a missed tick.
	if p99 > 1 {
		t.Errorf("start delay p99 under load: got ≤ %vs bucket, want ≤ 1s", p99)
	}
	failures := workertest.Sum(after["worker_job_runs_total"], map[string]string{"result": "failure"}) -
		workertest.Sum(before["worker_job_runs_total"], map[string]string{"result": "failure"})
	if failures != 0 {
		t.Errorf("failed job runs under load: got %v, want 0", failures)
	}
	total := ok.Load() + unavailable.Load()
	t.Logf("%d clients for %s (--web.max-requests=%d): %d scrapes (%.0f/s), %d answered 200, %d answered 503 (%.1f%%), all 503s counted in promhttp_metric_handler_requests_total{code=\"503\"}; %d job runs started, start delay p50 ≤ %gs, p99 ≤ %gs (bucket bounds of worker_job_start_delay_seconds)",
		scrapeClients, elapsed.Round(100*time.Millisecond), scrapeLimit, total, float64(total)/elapsed.Seconds(),
		ok.Load(), unavailable.Load(), 100*float64(unavailable.Load())/float64(max(total, 1)), samples, p50, p99)
	if code, _ := w.Stop(t, 60*time.Second); code != 0 {
		t.Errorf("exit code: got %d, want 0", code)
	}
}
