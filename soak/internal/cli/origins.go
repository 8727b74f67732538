package cli

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/sqlworker/worker/soak/internal/origin"
	"github.com/sqlworker/worker/soak/internal/runner"
)

// pprofOff is the --pprof-url that takes no profiles.
const pprofOff = "off"

// pprofPath is where net/http/pprof serves its profiles, beside the
// metrics path on the same listener.
const pprofPath = "/debug/pprof/"

// pprofBase returns the pprof base of a target: --pprof-url, or
// /debug/pprof/ on the host of its metrics URL. With several replicas,
// --pprof-url's port is raised like the metrics URL's.
func (o *options) pprofBase(metricsURL string, i int) string {
	if o.pprofURL != "" {
		base := o.pprofURL
		if o.replicas > 1 {
			base, _ = replicaURL(base, i) // validated
		}
		if !strings.HasSuffix(base, "/") {
			base += "/"
		}
		return base
	}
	u, _ := url.Parse(metricsURL) // validated
	u.Path, u.RawQuery, u.Fragment = pprofPath, "", ""
	return u.String()
}

// openTracker sets up the profiles of every target, unless --pprof-url off.
func (s *session) openTracker() {
	if s.o.pprofURL == pprofOff {
		s.origins = &origin.Result{Unavailable: "--pprof-url off"}
		return
	}
	var targets []origin.Target
	if len(s.replicas) == 0 {
		replica := ""
		if s.o.labelled() {
			replica = "1" // as openScrapers labels it
		}
		targets = append(targets, origin.Target{Replica: replica, URL: s.o.pprofBase(s.metricsURL, 1)})
	}
	for i, r := range s.replicas {
		targets = append(targets, origin.Target{Replica: r.name, URL: s.o.pprofBase(r.metricsURL, i+1)})
	}
	s.origins = &origin.Result{}
	for _, t := range targets {
		s.origins.URLs = append(s.origins.URLs, t.URL)
	}
	s.tracker = origin.New(targets)
}

// startProfiles takes the first base profiles in the background, while
// the soak scrapes (a target that hangs must not delay or stretch it), and
// arranges the warm-up ones.
func (s *session) startProfiles(ctx context.Context, cfg *runner.Config) {
	if s.tracker == nil {
		return
	}
	sctx, cancel := context.WithCancel(ctx)
	s.stopStart = cancel
	s.startErr = make(chan error, 1)
	go func() { s.startErr <- s.tracker.Start(sctx, 0) }()
	cfg.AfterWarmup = func(t float64) { s.tracker.Warm(ctx, t) }
}

// startedProfiles waits for the first base profiles (cut short when the
// soak did not go to its end) and, without pprof, says once why no origin
// is given. It reports whether the profiles are there.
func (s *session) startedProfiles(soakErr error) bool {
	if soakErr != nil {
		s.stopStart()
	}
	err := <-s.startErr
	s.stopStart()
	switch {
	case soakErr != nil:
		return false
	case err != nil:
		s.origins.Unavailable = noOrigin(err)
		fmt.Fprintf(s.stderr, "soak: no profiles, no origin will be given: %s\n", s.origins.Unavailable)
		return false
	}
	fmt.Fprintf(s.stderr, "soak: profiles taken from %s\n", strings.Join(s.origins.URLs, ", "))
	return true
}

// noOrigin says why a target gives no origin.
func noOrigin(err error) string {
	msg := strings.TrimPrefix(err.Error(), origin.ErrNoPprof.Error()+": ")
	if errors.Is(err, origin.ErrNoPprof) {
		msg += ": the target serves no net/http/pprof there (not written in Go, or pprof not enabled; --pprof-url gives its address)"
	}
	return msg
}

// endProfiles takes the end profiles, when the soak went to its end or was
// stopped by --fail-fast, and finds where each leaking series, and the
// series of each broken rule, grew: into the report and the verdict.
func (s *session) endProfiles(ctx context.Context, res *runner.Result, soakErr error) {
	if s.tracker == nil {
		return
	}
	defer s.tracker.Close()
	if !s.startedProfiles(soakErr) {
		return
	}
	s.tracker.End(ctx, res.Elapsed.Seconds())
	var want []origin.Series
	for _, key := range culpritKeys(res) {
		if sr := res.Recording.Get(key); sr != nil {
			want = append(want, origin.Series{Key: key, Name: sr.Name, Labels: sr.Labels, T: sr.T, V: sr.V})
		}
	}
	s.origins.Findings = s.tracker.Find(want)
	res.Culprits = map[string]string{}
	for _, f := range s.origins.Findings {
		if top, ok := f.Top(); ok && f.Explains {
			verb := "from"
			if f.Measure == "open" {
				verb = "most open at"
			}
			res.Culprits[f.Series] = verb + " " + top.Where()
		}
	}
	if s.o.reportDir != "" {
		if err := s.tracker.Save(s.o.reportDir); err != nil {
			fmt.Fprintf(s.stderr, "soak: %v\n", err)
		}
	}
}

// culpritKeys returns the keys of the leaking series and of the series of
// broken rules, in the verdict's order, once each.
func culpritKeys(res *runner.Result) []string {
	var keys []string
	seen := map[string]bool{}
	add := func(k string) {
		if k != "" && !seen[k] {
			seen[k] = true
			keys = append(keys, k)
		}
	}
	for _, l := range res.Leaks() {
		add(l.Series)
	}
	for _, b := range res.Broken() {
		add(b.Series)
	}
	return keys
}

// validatePprof checks --pprof-url.
func (o *options) validatePprof() error {
	if o.pprofURL == "" || o.pprofURL == pprofOff {
		return nil
	}
	if err := httpURL(o.pprofURL); err != nil {
		return fmt.Errorf("--pprof-url: %w", err)
	}
	if o.replicas > 1 {
		if _, err := replicaURL(o.pprofURL, o.replicas); err != nil {
			return fmt.Errorf("--pprof-url: %w", err)
		}
	}
	return nil
}
