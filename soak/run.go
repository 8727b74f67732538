package main

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
	"strings"
	"time"

	"github.com/sqlworker/worker/soak/internal/alert"
	"github.com/sqlworker/worker/soak/internal/invariant"
	"github.com/sqlworker/worker/soak/internal/report"
	"github.com/sqlworker/worker/soak/internal/runner"
	"github.com/sqlworker/worker/soak/internal/scrape"
	"github.com/sqlworker/worker/soak/internal/target"
)

// ErrAlarm is returned when the soak found a leak or a broken invariant; it
// maps to exit status 1.
var ErrAlarm = errors.New("leak or broken invariant")

// targetLog is the file in the report dir that gets COMMAND's output.
const targetLog = "target.log"

// run is the whole command: parse args, then build the soak (start the
// target if asked), soak, shut down (stop the target, close what the soak
// opened) and report (write the report, alert, print the verdict as the
// last line on stdout). It returns nil when steady, an error wrapping
// ErrAlarm on a leak or broken invariant, and any other error when it could
// not soak.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
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
	return s.report(ctx, res, soakErr, stdout)
}

// session is one soak of the command line: what build set up for it, and
// what shutdown stops and closes.
type session struct {
	o          *options
	stderr     io.Writer
	runID      string
	metricsURL string
	proc       *target.Process // the started COMMAND; nil under --target
	log        *os.File        // COMMAND's output in the report dir, or nil
	scraper    *scrape.Scraper
}

// build creates the report dir, starts COMMAND if there is one and waits
// until it is ready, and opens the scraper. On error it closes what it
// opened.
func build(ctx context.Context, o *options, stderr io.Writer) (*session, error) {
	s := &session{o: o, stderr: stderr, runID: o.runID, metricsURL: o.target}
	if s.runID == "" {
		s.runID = newRunID(time.Now())
	}
	if o.reportDir != "" {
		if err := os.MkdirAll(o.reportDir, 0o755); err != nil {
			return nil, fmt.Errorf("cannot create --report-dir: %w", err)
		}
	}
	if len(o.command) > 0 {
		if err := s.startTarget(ctx); err != nil {
			s.close()
			return nil, err
		}
	}
	s.scraper = scrape.New(s.metricsURL)
	return s, nil
}

// startTarget starts COMMAND, its output going to the target log (or to
// stderr without a report dir), and waits until it serves its metrics.
func (s *session) startTarget(ctx context.Context) error {
	o := s.o
	s.metricsURL = o.metricsURL
	out := s.stderr
	if o.reportDir != "" {
		f, err := os.Create(filepath.Join(o.reportDir, targetLog))
		if err != nil {
			return fmt.Errorf("cannot create target log: %w", err)
		}
		s.log, out = f, f
	}
	proc, err := target.Start(o.command[0], o.command[1:], out)
	if err != nil {
		return err
	}
	s.proc = proc
	fmt.Fprintf(s.stderr, "soak: started %s (pid %d), waiting for %s\n", strings.Join(o.command, " "), proc.Pid(), s.metricsURL)
	if err := proc.WaitReady(ctx, s.metricsURL, o.readyTimeout); err != nil {
		return fmt.Errorf("could not soak: %w", err)
	}
	return nil
}

// soak runs the soak loop against the target.
func (s *session) soak(ctx context.Context) (*runner.Result, error) {
	o := s.o
	fmt.Fprintf(s.stderr, "soak: run %s: soaking %s for %s (warm-up %s, every %s)\n", s.runID, s.metricsURL, o.duration, o.warmup, o.interval)
	cfg := runner.Config{
		Scraper:  s.scraper,
		Duration: o.duration,
		Interval: o.interval,
		Warmup:   o.warmup,
		FailFast: o.failFast,
		Watch:    o.specs(),
		Progress: s.stderr,
	}
	if s.proc != nil {
		cfg.Died = s.proc.Done()
	}
	res, err := runner.New(cfg).Run(ctx)
	if errors.Is(err, runner.ErrTargetDied) && s.proc != nil {
		err = fmt.Errorf("%w: %v", runner.ErrTargetDied, s.proc.ExitErr())
		res.Err = err
	}
	return res, err
}

// shutdown stops in order: the target with SIGTERM, judging its clean
// exit into res when the soak went to its end, then the scraper, then
// whatever of the target is left and its log. It returns soakErr, or
// ErrTargetDied when the target was gone by the time it was stopped.
func (s *session) shutdown(res *runner.Result, soakErr error) error {
	defer s.close()
	switch {
	case s.proc == nil || errors.Is(soakErr, runner.ErrTargetDied):
	case soakErr != nil:
		// Interrupted or could not soak: still stop the target gently.
		_ = s.proc.Stop(s.o.stopTimeout)
	default:
		fmt.Fprintf(s.stderr, "soak: stopping %s with SIGTERM\n", s.o.command[0])
		stopErr := s.proc.Stop(s.o.stopTimeout)
		if errors.Is(stopErr, target.ErrExited) {
			soakErr = fmt.Errorf("%w: %v", runner.ErrTargetDied, stopErr)
			res.Err = soakErr
			break
		}
		inv := invariant.Result{Rule: invariant.RuleCleanExit, Text: "exits 0 after SIGTERM", Applies: true,
			Detail: fmt.Sprintf("exited 0 after SIGTERM (within %s)", s.o.stopTimeout)}
		if stopErr != nil {
			inv.Broken, inv.At, inv.Detail = true, res.Elapsed.Seconds(), stopErr.Error()
		}
		res.Record(inv)
	}
	return soakErr
}

// close closes the scraper, kills the target if it still runs and closes
// its log; for shutdown and for build's error paths.
func (s *session) close() {
	if s.scraper != nil {
		s.scraper.Close()
	}
	if s.proc != nil {
		s.proc.Kill()
	}
	if s.log != nil {
		_ = s.log.Close()
	}
}

// report writes the report files, posts the alert on a leak, and prints the
// per-series table and the verdict. It returns run's error.
func (s *session) report(ctx context.Context, res *runner.Result, soakErr error, stdout io.Writer) error {
	o, stderr := s.o, s.stderr
	rep := report.New(res, report.Meta{RunID: s.runID, Target: s.metricsURL, Command: o.command})
	var writeErr error
	if o.reportDir != "" && res.Scrapes > 0 {
		if writeErr = rep.Write(o.reportDir); writeErr != nil {
			fmt.Fprintf(stderr, "soak: %v\n", writeErr)
		} else {
			fmt.Fprintf(stderr, "soak: report in %s\n", filepath.Join(o.reportDir, report.HTMLFile))
		}
	}
	if missing := res.Recording.Missing(); len(missing) > 0 && res.Scrapes > 0 {
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
	}
	for _, b := range res.Broken() {
		out = append(out, alert.Alert{
			Labels: map[string]string{
				"alertname": alert.NameInvariant,
				"severity":  "critical",
				"rule":      b.Rule,
				"series":    b.Series,
				"run_id":    runID,
				"target":    targetURL,
			},
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
