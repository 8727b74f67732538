package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/common/promslog"
	promslogflag "github.com/prometheus/common/promslog/flag"
	"github.com/prometheus/common/version"
	"github.com/prometheus/exporter-toolkit/web"
	"github.com/prometheus/exporter-toolkit/web/kingpinflag"

	"github.com/sqlworker/worker"
	webpkg "github.com/sqlworker/worker/internal/web"
	workerweb "github.com/sqlworker/worker/web"
)

// DefaultListenAddress is loopback only: the metrics name jobs and sizes,
// and exposing them to a network should be a decision, one flag away.
const DefaultListenAddress = "127.0.0.1:9847"

// usageError marks bad flags or config: exit status 2.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return &usageError{fmt.Errorf(format, args...)}
}

// flags are the parsed command line.
type flags struct {
	web           *web.FlagConfig
	telemetryPath string
	maxRequests   int
	configFile    string
	dbPath        string
	dbURL         string
	dbPassword    string // --db.password-file
	dbReplicaID   string
	configCheck   bool
	adminAPI      bool
	lifecycle     bool
	pprof         bool
	log           promslog.Config
	// explicit holds the flags given on the command line whose value must
	// not be empty: an empty one would silently mean "use the default".
	explicit []explicitFlag
}

// explicitFlag is a string flag registered with nonEmpty.
type explicitFlag struct {
	name string
	set  *bool
	val  *string
}

// parseFlags parses args in the Prometheus exporters' convention.
func parseFlags(args []string, stdout, stderr io.Writer) (*flags, error) {
	f := &flags{}
	app := kingpin.New("worker", "Runs scheduled jobs against one SQLite (or, with --db.url, PostgreSQL) database through one shared handle.")
	app.UsageWriter(stdout)
	app.ErrorWriter(stderr)
	app.Version(version.Print("worker"))
	app.HelpFlag.Short('h')
	f.web = kingpinflag.AddFlags(app, DefaultListenAddress)
	app.Flag("web.telemetry-path", "Path under which to expose metrics.").Default("/metrics").StringVar(&f.telemetryPath)
	app.Flag("web.max-requests", "Maximum number of parallel scrape requests; those over it are answered 503 and counted in promhttp_metric_handler_requests_total{code=\"503\"}. Use 0 to disable.").
		Default(strconv.Itoa(webpkg.DefaultMaxRequests)).IntVar(&f.maxRequests)
	app.Flag("web.enable-admin-api", "Serve the admin API: GET /api/v1/jobs lists the jobs, POST /api/v1/jobs/{name}/run runs one now. Behind the web config's TLS and basic auth like every path.").
		Default("false").BoolVar(&f.adminAPI)
	app.Flag("web.enable-lifecycle", "Serve POST and PUT /-/reload, which reloads the config file as SIGHUP does. Behind the web config's TLS and basic auth like every path.").
		Default("false").BoolVar(&f.lifecycle)
	app.Flag("web.enable-pprof", "Serve net/http/pprof under /debug/pprof/ and link its profiles from the landing page.").
		Default("false").BoolVar(&f.pprof)
	app.Flag("config.file", "Path to the YAML configuration file; without it the embedded defaults run.").StringVar(&f.configFile)
	f.nonEmpty(app, "db.path", "Path to the SQLite database; overrides database.path in the config file.", &f.dbPath)
	f.nonEmpty(app, "db.url", "postgres:// URL of a PostgreSQL database to use instead of SQLite; overrides database.url. Give the password with --db.password-file, PGPASSWORD or PGPASSFILE, not here: the command line is visible to every user.", &f.dbURL)
	f.nonEmpty(app, "db.password-file", "File whose first line is the PostgreSQL password; overrides database.password_file.", &f.dbPassword)
	f.nonEmpty(app, "db.replica-id", "This replica's id on PostgreSQL, in application_name worker-<id>; overrides database.replica_id. Default <hostname>-<pid>.", &f.dbReplicaID)
	app.Flag("config.check", "Validate the configuration, print the jobs that would run, and exit.").BoolVar(&f.configCheck)
	promslogflag.AddFlags(app, &f.log)
	if _, err := app.Parse(dashValues(args)); err != nil {
		return nil, &usageError{err}
	}
	return f, nil
}

// nonEmpty registers a string flag whose value, when given, must not be
// empty: `--db.replica-id ""` is a mistake, not a request for the default.
func (f *flags) nonEmpty(app *kingpin.Application, name, help string, dst *string) {
	set := new(bool)
	f.explicit = append(f.explicit, explicitFlag{name, set, dst})
	app.Flag(name, help).IsSetByUser(set).StringVar(dst)
}

// dashValues joins a lone "-" to the long flag before it ("--x -" becomes
// "--x=-"): kingpin reads a lone "-" as an empty value, so a flag given "-"
// would silently become "" (the worker takes no positional arguments).
func dashValues(args []string) []string {
	out := make([]string, 0, len(args))
	for i, a := range args {
		if a == "-" && i > 0 && strings.HasPrefix(args[i-1], "--") && !strings.Contains(args[i-1], "=") && len(out) > 0 {
			out[len(out)-1] += "=-"
			continue
		}
		out = append(out, a)
	}
	return out
}

// load validates the flags and loads the configuration. Each error names
// the flag or field it is about.
func (f *flags) load() (*worker.Config, error) {
	switch p := f.telemetryPath; {
	case !strings.HasPrefix(p, "/") || p == "/":
		return nil, usagef("--web.telemetry-path: must start with / and name a path, got %q", p)
	case p == webpkg.HealthzPath || p == webpkg.ReadyzPath:
		return nil, usagef("--web.telemetry-path: %q is taken by a health endpoint", p)
	}
	if f.maxRequests < 0 {
		return nil, usagef("--web.max-requests: must be 0 (no limit) or positive, got %d", f.maxRequests)
	}
	for _, a := range *f.web.WebListenAddresses {
		if a == "" {
			return nil, usagef("--web.listen-address: must not be empty")
		}
		if err := workerweb.CheckListenAddress(a); err != nil {
			return nil, usagef("--web.listen-address %s: %v", a, err)
		}
	}
	if p := *f.web.WebConfigFile; p != "" {
		if _, err := os.Stat(p); err != nil {
			return nil, usagef("--web.config.file: %v", err)
		}
		if err := web.Validate(p); err != nil {
			return nil, usagef("--web.config.file %s: %s", p, oneLine(err.Error()))
		}
	}
	for _, e := range f.explicit {
		if *e.set && *e.val == "" {
			return nil, usagef("--%s: must not be empty; leave the flag out for the default", e.name)
		}
	}
	if f.dbPath != "" {
		if strings.ContainsAny(f.dbPath, "?#\x00") || strings.HasSuffix(f.dbPath, "/") {
			return nil, usagef("--db.path: want a file path without '?' or '#', got %q", f.dbPath)
		}
	}
	o := worker.ConfigOverrides{DBPath: f.dbPath, DBURL: f.dbURL, DBPasswordFile: f.dbPassword, DBReplicaID: f.dbReplicaID}
	if f.configFile == "" {
		cfg, err := worker.ParseConfigWith(nil, o)
		if err != nil {
			return nil, &usageError{err}
		}
		return cfg, nil
	}
	cfg, err := worker.LoadConfigWith(f.configFile, o)
	var re *worker.ReadConfigError
	switch {
	case errors.As(err, &re):
		// One form for every read error, at start and at reload.
		return nil, usagef("--config.file %s: cannot read: %s", re.Path, re.Reason())
	case err != nil:
		return nil, &usageError{err}
	}
	return cfg, nil
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
