// Package cli is the soak command (bin/soak, whose main is soak/cmd/soak):
// its command line (cli.go), a soak from start to verdict (run.go), the
// leaks' origins from the target's profiles (origins.go), the comparison
// with a baseline (compare.go) and the exit statuses (exit.go). The
// packages it drives (scrape, runner, report, ...) are its siblings under
// soak/internal.
//
// Its tests start the test binary itself as the soaked COMMAND
// (child_test.go, origins_test.go): TestMain turns it into a worker-like
// service when the soak starts it.
package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sqlworker/worker/internal/pgtest"

	"github.com/sqlworker/worker/soak/internal/alert"
	"github.com/sqlworker/worker/soak/internal/ciformat"
	"github.com/sqlworker/worker/soak/internal/invariant"
	"github.com/sqlworker/worker/soak/internal/origin"
	"github.com/sqlworker/worker/soak/internal/pgprobe"
	"github.com/sqlworker/worker/soak/internal/report"
	"github.com/sqlworker/worker/soak/internal/runner"
	"github.com/sqlworker/worker/soak/internal/scrape"
	"github.com/sqlworker/worker/soak/internal/target"
)

// ErrAlarm is returned when the soak found a leak or a broken invariant; it
// maps to exit status 1.
var ErrAlarm = errors.New("leak or broken invariant")

// targetLog is the file in the report dir that gets COMMAND's output
// (target-N.log for replica N of several), and postgresLog the log of the
// server started by --postgres.
const (
	targetLog   = "target.log"
	postgresLog = "postgres.log"
)

// Run is the whole command: parse args, then build the soak (start the
// target if asked), soak, shut down (stop the target, close what the soak
// opened) and report (write the report, alert, print the verdict as the
// last line on stdout). It returns nil when steady, an error wrapping
// ErrAlarm on a leak or broken invariant, and any other error when it could
// not soak.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == compareCommand {
		return runCompare(args[1:], stdout, stderr)
	}
	o, err := parseArgs(args, stdout)
	switch {
	case errors.Is(err, errHelp):
		return nil
	case err != nil:
		return err
	}
	if o.render {
		rep, err := report.Load(o.reportDir)
		if err != nil {
			return err
		}
		return rep.Write(o.reportDir)
	}
	s, err := build(ctx, o, stderr)
	if err != nil {
		return err
	}
	res, soakErr := s.soak(ctx)
	soakErr = s.shutdown(res, soakErr)
	err = s.report(ctx, res, soakErr, stdout)
	if o.baseline == "" {
		return err
	}
	return s.againstBaseline(err, stdout)
}

// session is one soak of the command line: what build set up for it, and
// what shutdown stops and closes.
type session struct {
	o          *options
	stderr     io.Writer
	runID      string
	metricsURL string            // of the target, or of every replica, comma-separated
	replicas   []*replica        // the started COMMANDs; none under --target
	pg         *pgtest.Cluster   // the server started by --postgres, or nil
	probe      *pgprobe.Probe    // the server's own count, on PostgreSQL
	scrapers   []*scrape.Scraper // closed by close
	scraper    runner.Scraper    // what the soak scrapes
	died       chan struct{}     // closed when a replica exits
	dbURL      string            // the PostgreSQL server's, on PostgreSQL
	diedOnce   sync.Once
	tracker    *origin.Tracker // takes the targets' profiles; nil without pprof
	startErr   chan error      // the tracker's Start, which runs beside the soak
	stopStart  context.CancelFunc
	origins    *origin.Result // where the leaks come from, for the report
	rep        *report.Report // what report wrote, for --baseline
}

// replica is one started COMMAND.
type replica struct {
	name       string // its number, "" when there is only one
	metricsURL string
	args       []string
	proc       *target.Process
	log        *os.File // its output in the report dir, or nil
}

// build creates the report dir, starts the PostgreSQL server and COMMAND
// (each replica of it) if asked and waits until they are ready, and opens
// the scrapers. On error it closes what it opened.
func build(ctx context.Context, o *options, stderr io.Writer) (*session, error) {
	s := &session{o: o, stderr: stderr, runID: o.runID, metricsURL: o.target, died: make(chan struct{}), dbURL: o.postgresURL}
	if s.runID == "" {
		s.runID = newRunID(time.Now())
	}
	if o.reportDir != "" {
		if err := os.MkdirAll(o.reportDir, 0o755); err != nil {
			return nil, fmt.Errorf("cannot create --report-dir: %w", err)
		}
	}
	if err := s.startPostgres(); err != nil {
		s.close()
		return nil, err
	}
	if len(o.command) > 0 {
		if err := s.startTargets(ctx); err != nil {
			s.close()
			return nil, err
		}
	}
	s.openScrapers()
	s.openTracker()
	return s, nil
}

// startPostgres starts the throwaway server of --postgres, and opens the
// probe of the server's own count on PostgreSQL.
func (s *session) startPostgres() error {
	if s.o.postgres {
		srv, err := pgtest.InitCluster()
		if err != nil {
			return err
		}
		s.pg = srv
		// Room for leaking replicas to be caught before they exhaust it.
		if err := srv.Start("max_connections=200"); err != nil {
			return err
		}
		s.dbURL = srv.URL()
		fmt.Fprintf(s.stderr, "soak: started PostgreSQL in %s\n", srv.Dir())
	}
	if s.dbURL != "" {
		p, err := pgprobe.Open(s.dbURL)
		if err != nil {
			return fmt.Errorf("--postgres.url: %w", err)
		}
		s.probe = p
	}
	return nil
}

// startTargets starts COMMAND once per replica, each one's output going to
// its log (or to stderr without a report dir), and waits until every one
// serves its metrics.
func (s *session) startTargets(ctx context.Context) error {
	o := s.o
	var urls []string
	for i := 1; i <= o.replicas; i++ {
		r := &replica{metricsURL: o.metricsURL}
		if o.labelled() {
			r.name = strconv.Itoa(i)
		}
		if o.replicas > 1 {
			r.metricsURL, _ = replicaURL(o.metricsURL, i) // validated
		}
		r.args = replicaArgs(o.command[1:], i, r.metricsURL, s.dbURL)
		out := s.stderr
		if o.reportDir != "" {
			name := targetLog
			if o.replicas > 1 {
				name = fmt.Sprintf("target-%d.log", i)
			}
			f, err := os.Create(filepath.Join(o.reportDir, name))
			if err != nil {
				return fmt.Errorf("cannot create target log: %w", err)
			}
			r.log, out = f, f
		}
		s.replicas = append(s.replicas, r)
		proc, err := target.Start(o.command[0], r.args, out)
		if err != nil {
			return err
		}
		r.proc = proc
		go func() {
			select {
			case <-proc.Done():
				s.diedOnce.Do(func() { close(s.died) })
			case <-s.died:
			}
		}()
		fmt.Fprintf(s.stderr, "soak: started %s (pid %d), waiting for %s\n", strings.Join(append([]string{o.command[0]}, r.args...), " "), proc.Pid(), r.metricsURL)
		urls = append(urls, r.metricsURL)
	}
	s.metricsURL = strings.Join(urls, ",")
	for _, r := range s.replicas {
		if err := r.proc.WaitReady(ctx, r.metricsURL, o.readyTimeout); err != nil {
			if r.name != "" {
				return fmt.Errorf("could not soak: replica %s: %w", r.name, err)
			}
			return fmt.Errorf("could not soak: %w", err)
		}
	}
	return nil
}

// openScrapers opens the scraper of the target, or of every replica and
// the server combined.
func (s *session) openScrapers() {
	if !s.o.labelled() && s.probe == nil {
		sc := scrape.New(strings.Split(s.metricsURL, ",")[0])
		s.scrapers, s.scraper = []*scrape.Scraper{sc}, sc
		return
	}
	c := &scrape.Combined{}
	if len(s.replicas) == 0 {
		sc := scrape.New(s.metricsURL)
		s.scrapers = append(s.scrapers, sc)
		c.Parts = append(c.Parts, scrape.Part{Replica: "1", Source: sc})
	}
	for _, r := range s.replicas {
		sc := scrape.New(r.metricsURL)
		s.scrapers = append(s.scrapers, sc)
		c.Parts = append(c.Parts, scrape.Part{Replica: r.name, Source: sc})
	}
	if s.probe != nil {
		c.Parts = append(c.Parts, scrape.Part{Source: s.probe})
	}
	s.scraper = c
}

// soak runs the soak loop against the target.
func (s *session) soak(ctx context.Context) (*runner.Result, error) {
	o := s.o
	what := s.metricsURL
	if len(s.replicas) > 1 {
		what = fmt.Sprintf("%d replicas (%s)", len(s.replicas), s.metricsURL)
	}
	fmt.Fprintf(s.stderr, "soak: run %s: soaking %s for %s (warm-up %s, every %s)\n", s.runID, what, o.duration, o.warmup, o.interval)
	cfg := runner.Config{
		Scraper:  s.scraper,
		Duration: o.duration,
		Interval: o.interval,
		Warmup:   o.warmup,
		FailFast: o.failFast,
		Watch:    o.specs(),
		Progress: s.stderr,
	}
	if len(s.replicas) > 0 {
		cfg.Died = s.died
	}
	s.startProfiles(ctx, &cfg)
	res, err := runner.New(cfg).Run(ctx)
	if errors.Is(err, runner.ErrTargetDied) {
		err = fmt.Errorf("%w: %v", runner.ErrTargetDied, s.exitErrs())
		res.Err = err
	}
	s.endProfiles(ctx, res, err)
	return res, err
}

// exitErrs says which replicas exited, and how.
func (s *session) exitErrs() error {
	var errs []error
	for _, r := range s.replicas {
		select {
		case <-r.proc.Done():
			if r.name != "" && len(s.replicas) > 1 {
				errs = append(errs, fmt.Errorf("replica %s: %v", r.name, r.proc.ExitErr()))
			} else {
				errs = append(errs, r.proc.ExitErr())
			}
		default:
		}
	}
	return errors.Join(errs...)
}

// shutdown stops in order: every replica with SIGTERM, at once, judging its
// clean exit into res when the soak went to its end, then the scrapers,
// then whatever of the targets is left, their logs and the server. It
// returns soakErr, or ErrTargetDied when a target was gone by the time it
// was stopped.
func (s *session) shutdown(res *runner.Result, soakErr error) error {
	defer s.close()
	if len(s.replicas) == 0 || errors.Is(soakErr, runner.ErrTargetDied) {
		return soakErr
	}
	stopErrs := make([]error, len(s.replicas))
	var wg sync.WaitGroup
	if soakErr == nil {
		fmt.Fprintf(s.stderr, "soak: stopping %s with SIGTERM\n", s.o.command[0])
	}
	for i, r := range s.replicas {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stopErrs[i] = r.proc.Stop(s.o.stopTimeout)
		}()
	}
	wg.Wait()
	if soakErr != nil {
		// Interrupted or could not soak: the targets were still stopped
		// gently, and nothing is judged.
		return soakErr
	}
	for i, r := range s.replicas {
		stopErr := stopErrs[i]
		if errors.Is(stopErr, target.ErrExited) {
			if r.name != "" && len(s.replicas) > 1 {
				stopErr = fmt.Errorf("replica %s: %w", r.name, stopErr)
			}
			soakErr = fmt.Errorf("%w: %v", runner.ErrTargetDied, stopErr)
			res.Err = soakErr
			return soakErr
		}
		inv := invariant.Result{Rule: invariant.RuleCleanExit, Replica: r.name, Text: "exits 0 after SIGTERM", Applies: true,
			Detail: fmt.Sprintf("exited 0 after SIGTERM (within %s)", s.o.stopTimeout)}
		if stopErr != nil {
			inv.Broken, inv.At, inv.Detail = true, res.Elapsed.Seconds(), stopErr.Error()
		}
		if r.name != "" {
			inv.Text, inv.Detail = "replica "+r.name+": "+inv.Text, "replica "+r.name+": "+inv.Detail
		}
		res.Record(inv)
	}
	return soakErr
}

// close closes the scrapers and the probe, kills the targets that still
// run, closes their logs, and stops and removes the server, keeping its
// log in the report dir; for shutdown and for build's error paths.
func (s *session) close() {
	for _, sc := range s.scrapers {
		sc.Close()
	}
	if s.probe != nil {
		_ = s.probe.Close()
	}
	for _, r := range s.replicas {
		if r.proc != nil {
			r.proc.Kill()
		}
		if r.log != nil {
			_ = r.log.Close()
		}
	}
	if s.pg != nil {
		if s.o.reportDir != "" {
			if b, err := os.ReadFile(s.pg.LogFile()); err == nil {
				_ = os.WriteFile(filepath.Join(s.o.reportDir, postgresLog), b, 0o644)
			}
		}
		if err := s.pg.Remove(); err != nil {
			fmt.Fprintf(s.stderr, "soak: %v\n", err)
		}
	}
}

// report writes the report files, posts the alert on a leak, and prints the
// per-series table and the verdict. It returns Run's error.
func (s *session) report(ctx context.Context, res *runner.Result, soakErr error, stdout io.Writer) error {
	o, stderr := s.o, s.stderr
	rep := report.New(res, report.Meta{RunID: s.runID, Target: s.metricsURL, Command: o.command, Origins: s.origins})
	s.rep = rep
	var writeErr error
	if o.reportDir != "" && res.Scrapes > 0 {
		if writeErr = rep.Write(o.reportDir); writeErr != nil {
			fmt.Fprintf(stderr, "soak: %v\n", writeErr)
		} else {
			fmt.Fprintf(stderr, "soak: report in %s\n", filepath.Join(o.reportDir, report.HTMLFile))
		}
	}
	if o.reportDir != "" && writeErr == nil {
		// The CI formats (ciformat): JUnit XML and the Markdown summary,
		// also of a soak that could not be done (one case in error).
		if err := ciformat.WriteSoak(o.reportDir, rep); err != nil {
			fmt.Fprintf(stderr, "soak: %v\n", err)
		}
	}
	if missing := res.Recording.Missing(); len(missing) > 0 && res.Scrapes > res.Failures {
		fmt.Fprintf(stderr, "soak: not exposed by the target, skipped: %s\n", strings.Join(missing, ", "))
	}

	status := res.Status()
	if status == runner.StatusLeak && o.alertmanagerURL != "" {
		client := &http.Client{}
		err := alert.Post(context.WithoutCancel(ctx), client, o.alertmanagerURL, alerts(res, s.runID, s.metricsURL))
		client.CloseIdleConnections()
		if err != nil {
			fmt.Fprintf(stderr, "soak: %v\n", err)
		} else {
			fmt.Fprintf(stderr, "soak: alert posted to %s\n", o.alertmanagerURL)
		}
	}

	if status != runner.StatusError || len(res.Verdicts) > 0 {
		// The per-series table, then the verdict as the last line.
		printTable(stdout, rep)
	}
	switch status {
	case runner.StatusLeak:
		fmt.Fprintln(stdout, "soak: "+res.Sentence())
		return fmt.Errorf("%w: %s", ErrAlarm, strings.Join(res.SeriesNames(), ", "))
	case runner.StatusError:
		return fmt.Errorf("could not soak after %s: %w", res.Elapsed.Round(time.Second), soakErr)
	}
	if writeErr != nil {
		return writeErr
	}
	fmt.Fprintln(stdout, "soak: "+res.Sentence())
	return nil
}

// printTable writes the per-series table of summary.txt to w, each line
// prefixed like the other output, without the verdict sentence.
func printTable(w io.Writer, rep *report.Report) {
	var b strings.Builder
	if err := rep.WriteText(&b); err != nil {
		return
	}
	lines := strings.Split(strings.TrimRight(b.String(), "\n"), "\n")
	for _, l := range lines[:len(lines)-1] {
		fmt.Fprintln(w, "soak: "+l)
	}
}

// newRunID returns an id that sorts by time and is unique enough to tell
// runs apart: soak-20260102T150405Z-1a2b3c.
func newRunID(now time.Time) string {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return "soak-" + now.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b)
}

// alerts returns one alert per leaking series and one per broken rule.
func alerts(res *runner.Result, runID, targetURL string) []alert.Alert {
	now := time.Now()
	var out []alert.Alert
	for _, l := range res.Leaks() {
		slope := fmt.Sprintf("%+.4g", l.Verdict.SlopePerHour())
		out = append(out, alert.Alert{
			Labels: map[string]string{
				"alertname": alert.NameLeak,
				"severity":  "critical",
				"series":    l.Series,
				"run_id":    runID,
				"target":    targetURL,
			},
			Annotations: map[string]string{
				"summary":        fmt.Sprintf("Soak %s: %s keeps rising (%s/h)", runID, l.Series, slope),
				"description":    l.Verdict.Reason,
				"slope_per_hour": slope,
				"verdict":        res.Sentence(),
			},
			StartsAt: now,
		})
		if c := res.Culprits[l.Series]; c != "" {
			out[len(out)-1].Annotations["origin"] = c
		}
	}
	for _, b := range res.Broken() {
		labels := map[string]string{
			"alertname": alert.NameInvariant,
			"severity":  "critical",
			"rule":      b.Rule,
			"series":    b.Series,
			"run_id":    runID,
			"target":    targetURL,
		}
		if b.Replica != "" {
			labels["replica"] = b.Replica
		}
		out = append(out, alert.Alert{
			Labels: labels,
			Annotations: map[string]string{
				"summary":     fmt.Sprintf("Soak %s: invariant broken: %s", runID, b.Text),
				"description": b.Detail,
				"verdict":     res.Sentence(),
			},
			StartsAt: now,
		})
	}
	return out
}
