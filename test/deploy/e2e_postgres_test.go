package deploy_test

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sqlworker/worker/internal/pgtest"
	"github.com/sqlworker/worker/internal/workertest"
)

// e2ePGConfig runs every job a PostgreSQL worker offers every second: the
// built-ins there (heartbeat, history_prune) and one SQL job in
// PostgreSQL's SQL, so that every replica claims ticks within seconds.
const e2ePGConfig = `database:
  max_open_conns: 4
scheduler:
  timezone: UTC
  shutdown_grace: 2s
history:
  retention: 1h
builtin:
  heartbeat: {schedule: "@every 1s", timeout: 5s, enabled: true}
  history_prune: {schedule: "@every 1s", timeout: 5s}
jobs:
  - name: e2e_insert
    schedule: "* * * * * *"
    timeout: 5s
    enabled: true
    sql: |
      CREATE TABLE IF NOT EXISTS e2e (id bigserial PRIMARY KEY, at timestamptz NOT NULL);
      INSERT INTO e2e (at) VALUES (now());
`

// e2ePGScrape is how many successful scrapes of each replica the PostgreSQL
// test waits for before its queries: enough for every rate and increase
// over the dashboard's window to have two samples, and for the bypass
// replica's excess to outlast uncountedAlertFor.
const e2ePGScrape = 15

// uncountedAlertFor is the "for" of WorkerDatabaseServerConnectionsUncounted
// in the PostgreSQL test's copy of the rules.
const uncountedAlertFor = "5s"

// pgOnlyMetrics are the series only a worker on PostgreSQL exports; every
// panel of the dashboard's PostgreSQL row reads at least one of them.
var pgOnlyMetrics = []string{
	"worker_job_claims_total", "worker_job_leases_lost_total", "worker_job_fenced_finishes_total",
	"worker_job_ticks_missed_total", "worker_db_clock_offset_seconds", "worker_db_server_connections",
}

// sqliteOnlyRE matches the series only a worker on SQLite exports
// (README, "PostgreSQL": the -wal file and quick_check).
var sqliteOnlyRE = regexp.MustCompile(`\bworker_db_(wal_size_bytes|quick_check_ok)\b`)

// TestE2E_PrometheusScrapesPostgresReplicas runs three replicas of the built
// worker on one PostgreSQL server (internal/pgtest), each with its own
// --db.replica-id: two clean ones, and one leak build in bypass mode
// (WORKER_LEAK=bypass: every job run keeps one more connection that it
// opened around the counting driver). A real Prometheus scrapes them every
// second with the shipped rules (WorkerDatabaseServerConnectionsUncounted's
// "for" shortened to uncountedAlertFor). Then: every query of the
// dashboard's PostgreSQL row returns data for the clean replicas, every
// other panel too unless it reads a SQLite-only series, the uncounted
// connections alert fires for the bypass replica and for neither clean one,
// and every rule evaluates without error.
func TestE2E_PrometheusScrapesPostgresReplicas(t *testing.T) {
	t.Parallel()
	promBin := prometheus(t)
	promtoolBin := promtool(t)
	srv := pgtest.New(t)
	srv.Start(t)
	cleanBin := workertest.BuildOnce(t, "")
	leakBin := workertest.BuildOnce(t, "leak")

	start := func(name, bin string, env []string) string {
		w := workertest.Start(t, workertest.Options{Bin: bin, Config: e2ePGConfig, DBURL: srv.URL(), Env: env,
			Args: []string{"--db.replica-id", name}, LogLevel: "info"})
		w.WaitFor(t, name+" /readyz 200", time.Minute, func() bool { return w.Status("/readyz") == 200 })
		return w.Addr
	}
	clean1 := start("clean-1", cleanBin, nil)
	clean2 := start("clean-2", cleanBin, nil)
	bypassStart := time.Now()
	bypass := start("bypass", leakBin, []string{"WORKER_LEAK=bypass"})
	cleans := []string{clean1, clean2}

	rules := testRulesWith(t, map[string]string{"WorkerDatabaseServerConnectionsUncounted": uncountedAlertFor})
	api := startPrometheus(t, promBin, promtoolBin, rules, clean1, clean2, bypass)

	const alert = "WorkerDatabaseServerConnectionsUncounted"
	var firedAfter time.Duration
	eventually(t, 3*time.Minute, 500*time.Millisecond, fmt.Sprintf("%d scrapes of each replica and %s firing for the bypass replica", e2ePGScrape, alert), func() error {
		if firedAfter == 0 && alertStateOf(t, api, alert, bypass) == "firing" {
			firedAfter = time.Since(bypassStart)
		}
		if err := scrapedAtLeast(api, e2ePGScrape, clean1, clean2, bypass); err != nil {
			return err
		}
		if firedAfter == 0 {
			return fmt.Errorf("%s is not firing for %s", alert, bypass)
		}
		return nil
	})
	t.Logf("%s (for: %s in the test copy) fired %v after the bypass replica started",
		alert, uncountedAlertFor, firedAfter.Round(100*time.Millisecond))

	t.Run("BypassReplicaShowsUncounted", func(t *testing.T) {
		excess := func(inst string) float64 {
			t.Helper()
			v, err := api.query(fmt.Sprintf(`sum(worker_db_server_connections{instance=%q}) - sum(worker_db_connections_open{instance=%[1]q})`, inst))
			if err != nil || len(v) != 1 {
				t.Fatalf("server minus client connections of %s: %v, %v", inst, v, err)
			}
			n, _ := strconv.ParseFloat(v[0].Value[1].(string), 64)
			return n
		}
		n := excess(bypass)
		if n < 2 {
			t.Errorf("server minus client connections of the bypass replica = %v, want at least 2", n)
		}
		t.Logf("the bypass replica's server backends exceed its client's count by %v", n)
		// The client side of the bypass replica does not see its leak.
		v, err := api.query(fmt.Sprintf(`worker_db_connections_open{instance=%q} <= on (job, instance) max by (job, instance) (go_sql_max_open_connections{instance=%[1]q})`, bypass))
		if err != nil || len(v) != 1 {
			t.Errorf("worker_db_connections_open of the bypass replica within its pool bound: got %v, %v; want one sample", v, err)
		}
		// Never fired for a clean replica, at any evaluation of the run.
		v, err = api.query(fmt.Sprintf(`ALERTS{alertname=%q, alertstate="firing", instance=~%q}`, alert, clean1+"|"+clean2))
		if err != nil {
			t.Fatal(err)
		}
		if len(v) != 0 {
			t.Errorf("%s fires for a clean replica: %v", alert, v)
		}
		v, err = api.query(fmt.Sprintf(`count_over_time(ALERTS{alertname=%q, alertstate="firing", instance=~%q}[10m])`, alert, clean1+"|"+clean2))
		if err != nil {
			t.Fatal(err)
		}
		if len(v) != 0 {
			t.Errorf("%s fired for a clean replica during the run: %v", alert, v)
		}
		for _, inst := range cleans {
			// Equal at rest; a connect between the two reads of one scrape
			// may show one more on either side for an instant.
			if n := excess(inst); n < -1 || n > 1 {
				t.Errorf("server minus client connections of the clean replica %s = %v, want 0 (±1 in flight)", inst, n)
			}
		}
	})

	t.Run("ClaimsSpreadOverReplicas", func(t *testing.T) {
		for _, inst := range []string{clean1, clean2, bypass} {
			v, err := api.query(fmt.Sprintf(`sum(worker_job_claims_total{instance=%q, result="won"})`, inst))
			if err != nil || len(v) != 1 {
				t.Fatalf("won claims of %s: %v, %v", inst, v, err)
			}
			if n, _ := strconv.ParseFloat(v[0].Value[1].(string), 64); n == 0 {
				t.Errorf("replica %s won no claim", inst)
			}
		}
	})

	t.Run("DashboardQueries", func(t *testing.T) {
		sub := strings.NewReplacer(
			"$job", "worker",
			"$instance", clean1+"|"+clean2, // an =~ regex; its dots match themselves too
			"$__rate_interval", "1m",
			"$__interval", "15s",
			"$__range", "5m",
		)
		checkDashboardQueries(t, api, sub, "postgres")
	})

	t.Run("RulesHealthy", func(t *testing.T) {
		want := 0
		for _, g := range loadAlerts(t).Groups {
			want += len(g.Rules)
		}
		if got := checkRulesHealthy(t, api); got != want {
			t.Errorf("Prometheus loaded %d rules, want %d", got, want)
		}
	})
}

// startPrometheus starts a real Prometheus with rules that scrapes the
// targets as job "worker" every second, under the default scrape config
// otherwise (promtool checks it first), and waits until it is ready.
func startPrometheus(t *testing.T, bin, promtoolBin string, rules []byte, targets ...string) promAPI {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "alerts.yml"), rules, 0o600); err != nil {
		t.Fatal(err)
	}
	quoted := make([]string, len(targets))
	for i, tg := range targets {
		quoted[i] = strconv.Quote(tg)
	}
	promCfg := `global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files: [alerts.yml]
scrape_configs:
  - job_name: worker
    static_configs:
      - targets: [` + strings.Join(quoted, ", ") + `]
`
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(promCfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := run(t, dir, nil, promtoolBin, "check", "config", "prometheus.yml"); err != nil {
		t.Fatalf("promtool check config (test config): %v\n%s", err, out)
	}
	addr := workertest.FreeAddr(t)
	prom := workertest.StartProcess(t, "prometheus", nil, bin,
		"--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		"--storage.tsdb.retention.time=1d",
	)
	api := promAPI{base: "http://" + addr}
	eventually(t, time.Minute, 200*time.Millisecond, "Prometheus /-/ready", func() error {
		if prom.Exited() {
			t.Fatalf("prometheus exited:\n%s", prom.Logs())
		}
		code, _, err := httpGet(api.base + "/-/ready")
		if err != nil {
			return err
		}
		if code != 200 {
			return fmt.Errorf("status %d", code)
		}
		return nil
	})
	return api
}

// scrapedAtLeast returns nil once every instance was scraped at least n
// times in the last 5 minutes, and every one of those scrapes succeeded.
func scrapedAtLeast(api promAPI, n int, instances ...string) error {
	for _, inst := range instances {
		v, err := api.query(fmt.Sprintf(`count_over_time(up{job="worker", instance=%q}[5m]) and min_over_time(up{job="worker", instance=%[1]q}[5m]) == 1`, inst))
		if err != nil {
			return err
		}
		if len(v) == 0 {
			return fmt.Errorf("%s: not scraped yet, or a scrape failed", inst)
		}
		if got, _ := strconv.ParseFloat(v[0].Value[1].(string), 64); got < float64(n) {
			return fmt.Errorf("%s: %v successful scrapes, want %d", inst, got, n)
		}
	}
	return nil
}

// alertStateOf returns the state of the alert for the instance ("firing",
// "pending"), or "" when it is neither.
func alertStateOf(t testing.TB, api promAPI, name, instance string) string {
	t.Helper()
	alerts, err := api.alerts()
	if err != nil {
		t.Fatalf("GET /api/v1/alerts: %v", err)
	}
	state := ""
	for _, a := range alerts {
		if a.Labels["alertname"] == name && a.Labels["instance"] == instance && (state == "" || a.State == "firing") {
			state = a.State
		}
	}
	return state
}
