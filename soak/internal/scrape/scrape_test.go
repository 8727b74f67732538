package scrape_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"go.uber.org/goleak"

	"github.com/sqlworker/worker/soak/internal/scrape"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const exposition = `# HELP process_open_fds Number of open file descriptors.
# TYPE process_open_fds gauge
process_open_fds 12
# TYPE worker_open_fds gauge
worker_open_fds{type="file"} 3
worker_open_fds{type="socket"} 2
# TYPE worker_job_duration_seconds histogram
worker_job_duration_seconds_bucket{job_name="a",le="0.1"} 4
worker_job_duration_seconds_bucket{job_name="a",le="+Inf"} 5
worker_job_duration_seconds_sum{job_name="a"} 0.3
worker_job_duration_seconds_count{job_name="a"} 5
`

func value(v model.Vector, name string, labels ...string) (float64, bool) {
	for _, s := range v {
		if string(s.Metric[model.MetricNameLabel]) != name {
			continue
		}
		ok := true
		for i := 0; i+1 < len(labels); i += 2 {
			ok = ok && string(s.Metric[model.LabelName(labels[i])]) == labels[i+1]
		}
		if ok {
			return float64(s.Value), true
		}
	}
	return 0, false
}

// Ensure a scrape returns gauges by label set and expands histograms.
func TestScraper_Scrape(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, exposition)
	}))
	defer srv.Close()
	s := scrape.New(srv.URL)
	defer s.Close()

	v, err := s.Scrape(context.Background())
	if err != nil {
		t.Fatalf("got %v, want nil", err)
	}
	for _, tc := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"process_open_fds", nil, 12},
		{"worker_open_fds", []string{"type", "file"}, 3},
		{"worker_open_fds", []string{"type", "socket"}, 2},
		{"worker_job_duration_seconds_count", []string{"job_name", "a"}, 5},
	} {
		got, ok := value(v, tc.name, tc.labels...)
		if !ok || got != tc.want {
			t.Fatalf("%s%v=%g (found %v), want %g", tc.name, tc.labels, got, ok, tc.want)
		}
	}
}

// Ensure failures are errors naming the URL.
func TestScraper_Errors(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/bad" {
			fmt.Fprint(w, "not { exposition\n")
			return
		}
		http.Error(w, "nope", http.StatusServiceUnavailable)
	}))
	defer srv.Close()

	s := scrape.New(srv.URL + "/metrics")
	defer s.Close()
	if _, err := s.Scrape(context.Background()); !errors.Is(err, scrape.ErrStatus) {
		t.Fatalf("got %v, want ErrStatus", err)
	}
	b := scrape.New(srv.URL + "/bad")
	defer b.Close()
	if _, err := b.Scrape(context.Background()); err == nil {
		t.Fatal("got nil, want a parse error")
	}
}

// Ensure a scrape cut by its own timeout says so, with the timeout, and one
// cut by its caller's context does not claim a timeout of its own.
func TestScraper_TimedOut(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	t.Cleanup(srv.Close)
	sc := &scrape.Scraper{URL: srv.URL, Client: srv.Client(), Timeout: 50 * time.Millisecond}
	_, err := sc.Scrape(context.Background())
	if err == nil || !strings.Contains(err.Error(), "timed out after 50ms") {
		t.Errorf("own timeout: got %v, want it to say timed out after 50ms", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	sc.Timeout = time.Minute
	_, err = sc.Scrape(ctx)
	if err == nil || strings.Contains(err.Error(), "timed out after") {
		t.Errorf("caller's deadline: got %v, want an error that claims no timeout of its own", err)
	}
}
