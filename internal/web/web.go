// Package web serves the worker's HTTP face: the landing page, /metrics,
// /healthz and /readyz. Nothing else is served.
package web

import (
	"fmt"
	"net/http"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/exporter-toolkit/web"
)

// Paths of the health endpoints.
const (
	HealthzPath = "/healthz"
	ReadyzPath  = "/readyz"
)

// DefaultMaxRequestsInFlight bounds concurrent scrapes, each of which reads
// /proc and stats the database files.
const DefaultMaxRequestsInFlight = 10

// Readiness is what /readyz reports. The zero value is not ready.
type Readiness struct {
	reason atomic.Pointer[string] // nil when ready
}

// NewReadiness returns a Readiness that is not ready for the given reason.
func NewReadiness(reason string) *Readiness {
	r := &Readiness{}
	r.NotReady(reason)
	return r
}

// Ready marks the worker ready.
func (r *Readiness) Ready() { r.reason.Store(nil) }

// NotReady marks the worker not ready, with a reason shown by /readyz.
func (r *Readiness) NotReady(reason string) { r.reason.Store(&reason) }

// Reason returns why the worker is not ready, or "" when it is.
func (r *Readiness) Reason() string {
	if p := r.reason.Load(); p != nil {
		return *p
	}
	return ""
}

// Config holds what the handler serves.
type Config struct {
	TelemetryPath string // where metrics are served, such as /metrics
	Registry      *prometheus.Registry
	Readiness     *Readiness
	Version       string
}

// NewHandler returns the worker's HTTP handler.
func NewHandler(c Config) (http.Handler, error) {
	mux := http.NewServeMux()
	metrics := promhttp.HandlerFor(c.Registry, promhttp.HandlerOpts{
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: DefaultMaxRequestsInFlight,
		Registry:            c.Registry,
	})
	mux.Handle("GET "+c.TelemetryPath, promhttp.InstrumentMetricHandler(c.Registry, metrics))
	mux.HandleFunc("GET "+HealthzPath, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET "+ReadyzPath, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if reason := c.Readiness.Reason(); reason != "" {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, reason)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	landing, err := web.NewLandingPage(web.LandingConfig{
		Name:        "worker",
		Description: "Scheduled SQLite jobs on one shared handle, with the metrics that prove it does not leak",
		Version:     c.Version,
		Links: []web.LandingLinks{
			{Address: c.TelemetryPath, Text: "Metrics"},
			{Address: HealthzPath, Text: "Liveness", Description: "200 while the process serves"},
			{Address: ReadyzPath, Text: "Readiness", Description: "200 once the database is open and jobs are scheduled"},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("cannot build landing page: %w", err)
	}
	mux.Handle("GET /{$}", landing)
	return mux, nil
}
