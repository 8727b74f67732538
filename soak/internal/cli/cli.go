package cli

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/sqlworker/worker/soak/internal/detect"
	"github.com/sqlworker/worker/soak/internal/runner"
	"github.com/sqlworker/worker/soak/internal/series"
	"github.com/sqlworker/worker/soak/internal/target"
)

// Defaults of the flags not owned by a package.
const (
	DefaultMetricsURL = "http://127.0.0.1:9847/metrics"
	DefaultReportDir  = "soak-report"
)

// Errors of the command line.
var (
	// ErrUsage wraps every error in the command line.
	ErrUsage = errors.New("bad usage")
	// errHelp is returned after --help printed the usage.
	errHelp = errors.New("help requested")
)

// options are the parsed command line.
type options struct {
	duration, interval, warmup time.Duration
	readyTimeout, stopTimeout  time.Duration
	reportDir                  string
	alertmanagerURL            string
	failFast                   bool
	target                     string
	metricsURL                 string
	runID                      string
	watch                      []string
	tolerance                  map[string]string // metric name → count, or percentage for memory
	command                    []string
	render                     bool
	replicas                   int
	postgres                   bool   // start a throwaway PostgreSQL server
	postgresURL                string // or use this one
	pprofURL                   string // the target's net/http/pprof, "" beside its metrics, "off" for none
	baseline                   string // report to compare the soak with (compare.go)
	baselineForce              bool   // compare with it even when unlike
}

// Placeholders replaced in COMMAND's arguments, for each replica.
const (
	phReplica = "{replica}" // the replica's number, 1 to --replicas
	phPort    = "{port}"    // the port of the replica's metrics URL
	phDBURL   = "{db.url}"  // the PostgreSQL server's URL
)

// MaxReplicas bounds --replicas.
const MaxReplicas = 16

// parseArgs parses and validates the command line. Errors are wrapped in
// ErrUsage and name the flag at fault.
func parseArgs(args []string, stdout io.Writer) (*options, error) {
	o := &options{tolerance: map[string]string{}}
	app := kingpin.New("soak", "Soak a process and report whether its connections, file descriptors, goroutines or memory leak.\n\n"+
		"  soak [flags] -- COMMAND ARGS...   start COMMAND, wait for --metrics-url, soak it, stop it with SIGTERM\n"+
		"  soak [flags] --target URL         soak a process that someone else runs\n\n"+
		"  soak compare BASELINE CANDIDATE   compare two soaks' reports (soak compare --help)\n\n"+
		"Exit status: 0 steady, 1 leak or broken invariant, 2 could not soak.")
	help := false
	app.Terminate(func(int) { help = true })
	app.UsageWriter(stdout)
	app.ErrorWriter(io.Discard)
	app.HelpFlag.Short('h')

	app.Flag("duration", "How long to soak, warm-up included.").
		Default(runner.DefaultDuration.String()).SetValue(durationFlag(&o.duration, "duration"))
	app.Flag("interval", "Time between scrapes.").
		Default(runner.DefaultInterval.String()).SetValue(durationFlag(&o.interval, "interval"))
	app.Flag("warmup", "Samples in the first part of the soak are shown, not judged.").
		Default(runner.DefaultWarmup.String()).SetValue(durationFlag(&o.warmup, "warmup"))
	app.Flag("report-dir", "Directory for report.json, samples.csv, report.html (and target.log); empty for none.").
		Default(DefaultReportDir).StringVar(&o.reportDir)
	app.Flag("alertmanager.url", "Alertmanager base URL; a leak or broken invariant is posted to its /api/v2/alerts.").
		StringVar(&o.alertmanagerURL)
	app.Flag("fail-fast", "Stop as soon as a leak is certain or an invariant breaks.").
		BoolVar(&o.failFast)
	app.Flag("target", "Metrics URL of a process that someone else runs.").
		PlaceHolder("URL").StringVar(&o.target)
	app.Flag("metrics-url", "Metrics URL of the COMMAND started after --.").
		Default(DefaultMetricsURL).StringVar(&o.metricsURL)
	app.Flag("ready-timeout", "How long COMMAND may take until its metrics URL answers.").
		Default(target.DefaultReadyTimeout.String()).SetValue(durationFlag(&o.readyTimeout, "ready-timeout"))
	app.Flag("stop-timeout", "How long COMMAND may take to exit after SIGTERM before it is killed.").
		Default(target.DefaultStopTimeout.String()).SetValue(durationFlag(&o.stopTimeout, "stop-timeout"))
	app.Flag("run-id", "Identifies this run in the report and in alerts; generated when empty.").
		Envar("SOAK_RUN_ID").StringVar(&o.runID)
	app.Flag("watch", "Metric to watch, repeatable; replaces the default list ("+watchNames()+").").
		PlaceHolder("NAME").StringsVar(&o.watch)
	app.Flag("tolerance", "NAME=VALUE, repeatable: a fixed growth of NAME's high-water mark that is still healthy, instead of 1.5 × the noise measured on each series; a number for count series (20), a percentage for memory series (40%).").
		PlaceHolder("NAME=VALUE").SetValue(toleranceFlag(o.tolerance))
	app.Flag("render", "Only draw report.html again from the report.json in --report-dir.").
		Hidden().BoolVar(&o.render)
	app.Flag("replicas", "Start COMMAND this many times and soak them together; in its arguments "+phReplica+" is the replica's number and "+phPort+" the port of its metrics URL, which is --metrics-url's port plus the number minus 1.").
		Default("1").IntVar(&o.replicas)
	app.Flag("postgres", "Start a throwaway PostgreSQL server for the soak (the machine's postgresql package); "+phDBURL+" in COMMAND's arguments is its URL, and the server's own count of backends is watched.").
		BoolVar(&o.postgres)
	app.Flag("postgres.url", "Soak on this PostgreSQL server instead of starting one; "+phDBURL+" in COMMAND's arguments is this URL.").
		Envar("SOAK_DB_URL").PlaceHolder("URL").StringVar(&o.postgresURL)
	app.Flag("pprof-url", "Base URL of the target's net/http/pprof, whose profiles say where a leak comes from (with --replicas, replica N's port is this port plus N minus 1); by default "+pprofPath+" on the metrics URL's host; \""+pprofOff+"\" takes no profiles.").
		PlaceHolder("URL").StringVar(&o.pprofURL)
	app.Flag("baseline", "After the soak, compare it with this earlier soak's report directory or report.json (as `soak compare` does): exit 1 when a series or the CPU per job run regressed.").
		PlaceHolder("PATH").StringVar(&o.baseline)
	app.Flag("baseline.force", "Compare with --baseline even when the soaks are unlike.").BoolVar(&o.baselineForce)
	app.Arg("command", "Command to start and soak, after --.").StringsVar(&o.command)

	if _, err := app.Parse(args); err != nil {
		if help {
			return nil, errHelp
		}
		return nil, fmt.Errorf("%w: %v", ErrUsage, err)
	}
	if help {
		return nil, errHelp
	}
	if o.render {
		if o.reportDir == "" {
			return nil, fmt.Errorf("%w: --render needs --report-dir", ErrUsage)
		}
		return o, nil
	}
	if err := o.validate(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUsage, err)
	}
	return o, nil
}

func watchNames() string {
	names := make([]string, len(series.DefaultWatch))
	for i, s := range series.DefaultWatch {
		names[i] = s.Name
	}
	return strings.Join(names, ", ")
}

// validate checks flag values and combinations; each error names its flag.
func (o *options) validate() error {
	switch {
	case o.duration <= 0:
		return fmt.Errorf("--duration must be positive, got %s", o.duration)
	case o.interval <= 0:
		return fmt.Errorf("--interval must be positive, got %s", o.interval)
	case o.warmup < 0:
		return fmt.Errorf("--warmup must not be negative, got %s", o.warmup)
	case o.warmup >= o.duration:
		return fmt.Errorf("--warmup (%s) must be shorter than --duration (%s)", o.warmup, o.duration)
	case o.interval > o.duration:
		return fmt.Errorf("--interval (%s) must not exceed --duration (%s)", o.interval, o.duration)
	case o.readyTimeout <= 0:
		return fmt.Errorf("--ready-timeout must be positive, got %s", o.readyTimeout)
	case o.stopTimeout <= 0:
		return fmt.Errorf("--stop-timeout must be positive, got %s", o.stopTimeout)
	case o.target != "" && len(o.command) > 0:
		return fmt.Errorf("--target and a COMMAND after -- exclude each other")
	case o.target == "" && len(o.command) == 0:
		return fmt.Errorf("--target URL or -- COMMAND ARGS... is required")
	case o.replicas < 1 || o.replicas > MaxReplicas:
		return fmt.Errorf("--replicas must be between 1 and %d, got %d", MaxReplicas, o.replicas)
	case o.replicas > 1 && o.target != "":
		return fmt.Errorf("--replicas needs a COMMAND after --, not --target")
	case o.postgres && o.postgresURL != "":
		return fmt.Errorf("--postgres and --postgres.url exclude each other")
	case o.postgres && o.target != "":
		return fmt.Errorf("--postgres starts a server for a COMMAND after --, not for --target")
	}
	if o.postgresURL != "" && !strings.HasPrefix(o.postgresURL, "postgres://") && !strings.HasPrefix(o.postgresURL, "postgresql://") {
		return fmt.Errorf("--postgres.url: want a postgres:// URL, got %q", o.postgresURL)
	}
	if o.target != "" {
		if err := httpURL(o.target); err != nil {
			return fmt.Errorf("--target: %w", err)
		}
	} else if err := httpURL(o.metricsURL); err != nil {
		return fmt.Errorf("--metrics-url: %w", err)
	} else if o.replicas > 1 {
		if _, err := replicaURL(o.metricsURL, o.replicas); err != nil {
			return fmt.Errorf("--metrics-url: %w", err)
		}
	}
	if err := o.validatePprof(); err != nil {
		return err
	}
	if o.alertmanagerURL != "" {
		if err := httpURL(o.alertmanagerURL); err != nil {
			return fmt.Errorf("--alertmanager.url: %w", err)
		}
	}
	if o.baseline != "" {
		if _, err := os.Stat(o.baseline); err != nil {
			return fmt.Errorf("--baseline: %w", err)
		}
	}
	for _, w := range o.watch {
		if w == "" || strings.ContainsAny(w, "{} \t") {
			return fmt.Errorf("--watch: %q is not a metric name", w)
		}
	}
	_, err := o.specsWithTolerances()
	return err
}

// httpURL checks that s is an absolute http or https URL.
func httpURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q is not an http(s) URL", s)
	}
	return nil
}

// onPostgres reports whether the soak is on a PostgreSQL server.
func (o *options) onPostgres() bool { return o.postgres || o.postgresURL != "" }

// labelled reports whether every replica's samples get the replica label:
// with several, and on PostgreSQL, where the server's count of backends
// is the harness's own and the replicas' must be told from it.
func (o *options) labelled() bool { return o.replicas > 1 || o.onPostgres() }

// replicaURL returns the metrics URL of replica i (1-based): base with its
// port raised by i−1.
func replicaURL(base string, i int) (string, error) {
	u, err := url.Parse(base)
	if err != nil {
		return "", err
	}
	port, err := strconv.Atoi(u.Port())
	if err != nil {
		return "", fmt.Errorf("%q has no port to number the replicas from", base)
	}
	if port+i-1 > 65535 {
		return "", fmt.Errorf("port %d of replica %d is out of range", port+i-1, i)
	}
	u.Host = u.Hostname() + ":" + strconv.Itoa(port+i-1)
	return u.String(), nil
}

// replicaArgs returns COMMAND's arguments for replica i, with metrics URL
// mURL, on the server at dbURL, the placeholders replaced.
func replicaArgs(args []string, i int, mURL, dbURL string) []string {
	u, _ := url.Parse(mURL)
	r := strings.NewReplacer(phReplica, strconv.Itoa(i), phPort, u.Port(), phDBURL, dbURL)
	out := make([]string, len(args))
	for j, a := range args {
		out[j] = r.Replace(a)
	}
	return out
}

// specs returns the watch list of o, with its --tolerance overrides.
// validate has checked them.
func (o *options) specs() []series.Spec {
	specs, _ := o.specsWithTolerances()
	return specs
}

func (o *options) specsWithTolerances() ([]series.Spec, error) {
	var out []series.Spec
	if len(o.watch) == 0 {
		out = slices.Clone(series.DefaultWatch)
		if o.onPostgres() {
			out = append(out, series.PostgresWatch...)
		}
	} else {
		for _, w := range o.watch {
			out = append(out, series.SpecFor(w))
		}
	}
	for _, name := range slices.Sorted(maps.Keys(o.tolerance)) {
		i := slices.IndexFunc(out, func(s series.Spec) bool { return s.Name == name })
		if i < 0 {
			return nil, fmt.Errorf("--tolerance %s: %s is not watched", name, name)
		}
		tol, err := parseTolerance(out[i].Kind, o.tolerance[name])
		if err != nil {
			return nil, fmt.Errorf("--tolerance %s=%s: %v", name, o.tolerance[name], err)
		}
		out[i].Fixed, out[i].Tolerance = true, tol
		out[i].Why = "--tolerance " + name + "=" + o.tolerance[name]
	}
	return out, nil
}

// parseTolerance reads a count ("20") for count series and a percentage
// ("40%") for memory series, whose tolerance is relative.
func parseTolerance(kind detect.Kind, s string) (float64, error) {
	pct, isPct := strings.CutSuffix(s, "%")
	v, err := strconv.ParseFloat(pct, 64)
	switch {
	case err != nil || v < 0 || math.IsInf(v, 0) || math.IsNaN(v):
		return 0, errors.New("want a number ≥ 0, or a percentage such as 40%")
	case kind == detect.Memory && !isPct:
		return 0, errors.New("a memory series takes a percentage, such as 40%")
	case kind != detect.Memory && isPct:
		return 0, errors.New("a count series takes a number, such as 20")
	case isPct:
		return v / 100, nil
	}
	return v, nil
}

// durationValue is a kingpin.Value for a duration whose parse errors name
// the flag, which kingpin's own duration flag does not.
type durationValue struct {
	d    *time.Duration
	name string
}

func durationFlag(d *time.Duration, name string) *durationValue {
	return &durationValue{d: d, name: name}
}

// Set implements kingpin.Value.
func (v *durationValue) Set(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("--%s: invalid duration %q", v.name, s)
	}
	*v.d = d
	return nil
}

// String implements kingpin.Value.
func (v *durationValue) String() string { return v.d.String() }

// toleranceValue is a repeatable kingpin.Value for NAME=VALUE pairs whose
// errors name the flag, which kingpin's own map flag does not.
type toleranceValue map[string]string

func toleranceFlag(m map[string]string) toleranceValue { return toleranceValue(m) }

// Set implements kingpin.Value.
func (v toleranceValue) Set(s string) error {
	name, val, ok := strings.Cut(s, "=")
	if !ok || name == "" || val == "" {
		return fmt.Errorf("--tolerance: want NAME=VALUE, such as go_goroutines=20, got %q", s)
	}
	v[name] = val
	return nil
}

// String implements kingpin.Value.
func (v toleranceValue) String() string { return fmt.Sprint(map[string]string(v)) }

// IsCumulative makes the flag repeatable.
func (v toleranceValue) IsCumulative() bool { return true }
