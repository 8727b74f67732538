// Package web serves the worker's HTTP face: the landing page, /metrics,
// /healthz and /readyz, the status page (/jobs, read-only without the admin
// API), and, only when asked for, the admin API (/api/v1/jobs, with the
// status page's buttons), the lifecycle API (/-/reload) and net/http/pprof
// (/debug/pprof/). Nothing else is served.
package web

import (
	"fmt"
	"net/http"
	"net/http/pprof"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Paths of the health endpoints, and of the lifecycle API's reload.
const (
	HealthzPath = "/healthz"
	ReadyzPath  = "/readyz"
	ReloadPath  = "/-/reload"
)

// DefaultMaxRequests is the default of Config.MaxRequests and of the
// --web.max-requests flag: node_exporter's default. Each scrape reads /proc
// and stats the database files; a scrape over the limit is answered 503 and
// counted in promhttp_metric_handler_requests_total{code="503"}.
const DefaultMaxRequests = 40

// Readiness is what /readyz reports: the worker's lifecycle (starting,
// ready, shutting down), faults that its parts report as they see them, and
// checks evaluated on every request. It is ready when the lifecycle is and
// no fault or check says otherwise. The zero value is not ready.
type Readiness struct {
	reason atomic.Pointer[string] // lifecycle; nil when ready

	mu     sync.Mutex
	faults map[string]string    // by name; set by SetFault
	seen   map[string]time.Time // by name: the time of the newest observation, for SetFaultAt
	checks []check
}

type check struct {
	name string
	fn   func() error
}

// SetFault records that a part of the worker is faulty for the reason err,
// or that it is not any more when err is nil. It reports whether the fault
// appeared or cleared (not whether its reason changed).
func (r *Readiness) SetFault(name string, err error) (changed bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.setFaultLocked(name, err)
}

func (r *Readiness) setFaultLocked(name string, err error) (changed bool) {
	_, had := r.faults[name]
	if err == nil {
		delete(r.faults, name)
		return had
	}
	if r.faults == nil {
		r.faults = make(map[string]string)
	}
	r.faults[name] = strings.Join(strings.Fields(err.Error()), " ")
	return !had
}

// SetFaultAt is SetFault for an observation made at time at, such as a job
// run scheduled then. Observations can arrive out of order (a run's record
// can be written after a newer run's); one older than the newest observation
// of name seen so far is ignored, so the fault always says what the newest
// observation said. Ties are applied. It reports whether the fault appeared
// or cleared.
func (r *Readiness) SetFaultAt(name string, at time.Time, err error) (changed bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if last, ok := r.seen[name]; ok && at.Before(last) {
		return false
	}
	if r.seen == nil {
		r.seen = make(map[string]time.Time)
	}
	r.seen[name] = at
	return r.setFaultLocked(name, err)
}

// AddCheck adds a check that /readyz runs on every request; a non-nil error
// makes the worker not ready. It must be cheap and must not block.
func (r *Readiness) AddCheck(name string, fn func() error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.checks = append(r.checks, check{name, fn})
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

// Reason returns why the worker is not ready, one line per cause, or ""
// when it is.
func (r *Readiness) Reason() string {
	if p := r.reason.Load(); p != nil {
		return *p
	}
	r.mu.Lock()
	checks := r.checks
	faults := make([]string, 0, len(r.faults))
	for name, reason := range r.faults {
		faults = append(faults, name+": "+reason)
	}
	r.mu.Unlock()
	sort.Strings(faults)
	var lines []string
	for _, c := range checks {
		if err := c.fn(); err != nil {
			lines = append(lines, c.name+": "+strings.Join(strings.Fields(err.Error()), " "))
		}
	}
	return strings.Join(append(lines, faults...), "\n")
}

// Config holds what the handler serves.
type Config struct {
	TelemetryPath string // where metrics are served, such as /metrics
	// Gatherer is what TelemetryPath serves.
	Gatherer prometheus.Gatherer
	// Registerer receives the handler's own metrics
	// (promhttp_metric_handler_*); nil registers them nowhere.
	Registerer prometheus.Registerer
	Readiness  *Readiness
	Version    string
	// MaxRequests bounds concurrent scrapes of TelemetryPath; those over
	// it are answered 503. 0 means no limit; negative values are treated
	// as 0 (promhttp's MaxRequestsInFlight).
	MaxRequests int
	// Admin, when set, serves the admin API: GET /api/v1/jobs and
	// POST /api/v1/jobs/{name}/run. Nil serves neither path (404).
	Admin Admin
	// EnablePprof serves net/http/pprof under /debug/pprof/ and links its
	// heap and CPU profiles from the landing page; off, neither is there.
	EnablePprof bool
	// Database, when set, is shown on the landing page: what the worker
	// opens, with any password already masked.
	Database string
	// Reload, when set, serves POST and PUT /-/reload, as Prometheus's
	// --web.enable-lifecycle does: 200 once it returned nil, 500 with its
	// error otherwise. Nil serves no such path (404).
	Reload func() error
	// Landing, when set, is served at GET /; nil serves PlainPage of
	// Page.
	Landing http.Handler
	// Jobs, when set, serves the status page at /jobs (page.go), with its
	// run, pause and resume buttons when Admin is set too.
	Jobs JobSource
}

// NewHandler returns the worker's HTTP handler.
func NewHandler(c Config) (http.Handler, error) {
	mux := http.NewServeMux()
	// gzipHandler compresses in promhttp's place, at a faster level than
	// promhttp's, which HandlerOpts cannot set.
	reg := c.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry() // InstrumentMetricHandler registers into one
	}
	metrics := gzipHandler(promhttp.HandlerFor(c.Gatherer, promhttp.HandlerOpts{
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: c.MaxRequests,
		Registry:            reg,
		DisableCompression:  true,
	}))
	// InstrumentMetricHandler registers promhttp_metric_handler_requests_in_flight
	// and promhttp_metric_handler_requests_total{code}; it wraps the limit,
	// so the 503s of the limit are counted under code="503".
	mux.Handle("GET "+c.TelemetryPath, promhttp.InstrumentMetricHandler(reg, metrics))
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
	handleJobs(mux, c)
	if c.Reload != nil {
		reload := func(w http.ResponseWriter, _ *http.Request) {
			if err := c.Reload(); err != nil {
				http.Error(w, "failed to reload config: "+err.Error(), http.StatusInternalServerError)
			}
		}
		mux.HandleFunc("POST "+ReloadPath, reload)
		mux.HandleFunc("PUT "+ReloadPath, reload)
	}
	if c.EnablePprof {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("POST /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	landing := c.Landing
	if landing == nil {
		landing = PlainPage(c.Page())
	}
	mux.Handle("GET /{$}", landing)
	return mux, nil
}

// handleJobs serves what c asks for of the jobs: the admin API with its
// pause and resume, and the status page.
//
// Every one of their POSTs refuses a cross-origin request from a browser
// (403, http.CrossOriginProtection): behind basic auth, a browser would
// send the operator's credentials with a form that another site posts
// here. curl and other clients that send no Origin or Sec-Fetch-Site are
// not affected.
func handleJobs(mux *http.ServeMux, c Config) {
	if c.Admin == nil && c.Jobs == nil {
		return
	}
	jobs := http.NewServeMux()
	if c.Admin != nil {
		handleAdmin(jobs, c.Admin)
		if p, ok := c.Admin.(Pauser); ok {
			handlePause(jobs, p)
		}
		handleBackfill(jobs, c.Admin)
	}
	if c.Jobs != nil {
		handlePage(jobs, c.Jobs, c.Admin)
	}
	h := http.NewCrossOriginProtection().Handler(jobs)
	for _, prefix := range []string{"/api/v1/", PagePath, PagePath + "/"} {
		mux.Handle(prefix, h)
	}
}
