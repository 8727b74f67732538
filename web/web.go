// Package web serves a Worker's HTTP face as the worker daemon does, with
// exporter-toolkit (github.com/prometheus/exporter-toolkit/web): its
// landing page, and a server that takes the web config file's TLS and basic
// auth and listens on TCP, on vsock, or on the sockets systemd passed.
//
// The worker package serves the same paths with net/http and promhttp
// only, and a plain landing page; this package is for a program that wants
// the daemon's face and accepts exporter-toolkit's dependencies (go-systemd,
// vsock, jwt, oauth2 among them):
//
//	h, err := w.Handler(worker.HandlerOptions{Gatherer: reg, LandingPage: web.LandingPage})
//	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
//	l, err := web.Listen("127.0.0.1:9847")
//	err = web.Serve(srv, []net.Listener{l}, flags, logger) // flags: kingpinflag.AddFlags
//
// The API is v0: it may change until 1.0.
package web

import (
	"html"
	"log/slog"
	"net"
	"net/http"

	toolkit "github.com/prometheus/exporter-toolkit/web"

	"github.com/sqlworker/worker"
)

// LandingPage renders l as exporter-toolkit's landing page, the worker
// daemon's: give it as worker.HandlerOptions.LandingPage.
func LandingPage(l worker.Landing) (http.Handler, error) {
	links := make([]toolkit.LandingLinks, 0, len(l.Links))
	for _, link := range l.Links {
		links = append(links, toolkit.LandingLinks(link))
	}
	profiling := "false" // exporter-toolkit links /debug/pprof/ unless told not to
	if l.Profiling {
		profiling = "true"
	}
	var extra string
	if l.Database != "" {
		extra = "<p>Database: <code>" + html.EscapeString(l.Database) + "</code></p>"
	}
	return toolkit.NewLandingPage(toolkit.LandingConfig{
		ExtraHTML:   extra,
		Profiling:   profiling,
		Name:        l.Name,
		Description: l.Description,
		Version:     l.Version,
		Links:       links,
	})
}

// Serve serves srv through exporter-toolkit, with the TLS and basic auth of
// flags' web config file, until srv is shut down: on the sockets systemd
// passed when flags.WebSystemdSocket is set, on listeners otherwise (see
// Listen). It returns http.ErrServerClosed after a Shutdown, as
// http.Server.Serve does.
func Serve(srv *http.Server, listeners []net.Listener, flags *toolkit.FlagConfig, logger *slog.Logger) error {
	if flags.WebSystemdSocket != nil && *flags.WebSystemdSocket {
		return toolkit.ListenAndServe(srv, flags, logger)
	}
	return toolkit.ServeMultiple(listeners, srv, flags, logger)
}
