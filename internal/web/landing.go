package web

import (
	"html"
	"net/http"
	"strings"
)

// Page is what the landing page at / shows.
type Page struct {
	Name        string
	Description string
	Version     string
	// Database is what the worker opens, any password masked; "" shows
	// none.
	Database string
	Links    []Link
	// Profiling says that pprof is served: the page links its heap and
	// CPU profiles.
	Profiling bool
}

// Link is a link of the landing page.
type Link struct {
	Address     string // an absolute path, such as /metrics
	Text        string
	Description string
}

// Page returns the landing page of what c serves.
func (c Config) Page() Page {
	links := []Link{
		{Address: c.TelemetryPath, Text: "Metrics"},
		{Address: HealthzPath, Text: "Liveness", Description: "200 while the process serves"},
		{Address: ReadyzPath, Text: "Readiness", Description: "200 once the database is open and jobs are scheduled, 503 with the reason while a fault makes the worker useless"},
	}
	if c.Jobs != nil {
		links = append(links, Link{Address: PagePath, Text: "Status page", Description: "each job's state, next run and last runs; run, pause and resume with the admin API on"})
	}
	if c.Admin != nil {
		links = append(links, Link{Address: AdminJobsPath, Text: "Jobs", Description: "admin API: each job's schedule, next run and last run, as JSON"})
	}
	return Page{
		Name:        "worker",
		Description: "Scheduled SQLite jobs on one shared handle, with the metrics that prove it does not leak",
		Version:     c.Version,
		Database:    c.Database,
		Links:       links,
		Profiling:   c.EnablePprof,
	}
}

// PlainPage returns a handler of p as plain HTML, with no style and no
// dependency: the library's page. The daemon serves exporter-toolkit's
// instead (package github.com/sqlworker/worker/web).
func PlainPage(p Page) http.Handler {
	var b strings.Builder
	e := html.EscapeString
	b.WriteString("<!DOCTYPE html>\n<html lang=\"en\">\n<head><meta charset=\"UTF-8\"><title>" + e(p.Name) + "</title></head>\n<body>\n<h1>" + e(p.Name) + "</h1>\n")
	if p.Description != "" {
		b.WriteString("<p>" + e(p.Description) + "</p>\n")
	}
	if p.Version != "" {
		b.WriteString("<p>Version: " + e(p.Version) + "</p>\n")
	}
	if p.Database != "" {
		b.WriteString("<p>Database: <code>" + e(p.Database) + "</code></p>\n")
	}
	b.WriteString("<ul>\n")
	for _, l := range p.Links {
		b.WriteString("<li><a href=\"" + e(l.Address) + "\">" + e(l.Text) + "</a>")
		if l.Description != "" {
			b.WriteString(": " + e(l.Description))
		}
		b.WriteString("</li>\n")
	}
	if p.Profiling {
		b.WriteString("<li><a href=\"/debug/pprof/heap\">heap usage (memory)</a></li>\n<li><a href=\"/debug/pprof/profile?seconds=60\">CPU usage (60 second profile)</a></li>\n")
	}
	b.WriteString("</ul>\n</body>\n</html>\n")
	page := []byte(b.String())
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write(page)
	})
}
