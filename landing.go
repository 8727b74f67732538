package worker

import (
	"net/http"

	webpkg "github.com/sqlworker/worker/internal/web"
)

// Landing is what the landing page at / shows. Handler builds it from
// HandlerOptions and gives it to HandlerOptions.LandingPage, which renders
// it; package github.com/sqlworker/worker/web renders it as the worker
// daemon does, with exporter-toolkit's page.
type Landing struct {
	Name        string // "worker"
	Description string // one line on what the worker does
	Version     string // HandlerOptions.Version; "" shows none
	// Database is the PostgreSQL database the worker opens, its password
	// masked; "" on SQLite.
	Database string
	// Links are the paths served: the metrics, /healthz, /readyz and,
	// when enabled, the admin API's job list.
	Links []LandingLink
	// Profiling says that pprof is served (HandlerOptions.EnablePprof):
	// the page should link /debug/pprof/heap and
	// /debug/pprof/profile?seconds=60.
	Profiling bool
}

// LandingLink is a link of the landing page.
type LandingLink struct {
	Address     string // an absolute path, such as /metrics
	Text        string // the link's text
	Description string // what is there; "" for none
}

// landingPage returns the page of c: opts.LandingPage's rendering of it,
// or nil, which the handler serves as a plain page of its own.
func landingPage(c webpkg.Config, render func(Landing) (http.Handler, error)) (http.Handler, error) {
	if render == nil {
		return nil, nil
	}
	p := c.Page()
	l := Landing{Name: p.Name, Description: p.Description, Version: p.Version, Database: p.Database, Profiling: p.Profiling}
	for _, link := range p.Links {
		l.Links = append(l.Links, LandingLink(link))
	}
	return render(l)
}
