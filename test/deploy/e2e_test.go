package deploy_test

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-yaml"
	gdash "github.com/grafana/grafana-foundation-sdk/go/dashboard"

	"github.com/sqlworker/worker/internal/workertest"
)

// e2eWorkerConfig runs every job, built-in and user, every second, so that
// every series (worker_db_quick_check_ok included) exists within seconds.
const e2eWorkerConfig = `database:
  max_open_conns: 4
  busy_timeout: 5s
scheduler:
  timezone: UTC
  shutdown_grace: 2s
history:
  retention: 1h
builtin:
  heartbeat: {schedule: "@every 1s", timeout: 5s, enabled: true}
  wal_checkpoint: {schedule: "@every 1s", timeout: 5s}
  optimize: {schedule: "@every 1s", timeout: 5s}
  quick_check: {schedule: "@every 1s", timeout: 5s}
  history_prune: {schedule: "@every 1s", timeout: 5s}
jobs:
  - name: e2e_insert
    schedule: "@every 1s"
    timeout: 5s
    enabled: true
    sql: |
      CREATE TABLE IF NOT EXISTS e2e (id INTEGER PRIMARY KEY, at INTEGER NOT NULL);
      INSERT INTO e2e (at) VALUES (unixepoch());
`

// e2eScrape is how long Prometheus must have scraped the workers before the
// queries run: at least 30 s, issue 4 says.
const e2eScrape = 31 // samples of up at a 1 s scrape interval

// handlesAlertFor is the "for" of WorkerDatabaseHandlesLeaking in the test
// copy of the rules; every other rule is loaded as shipped.
const handlesAlertFor = "2s"

// startWorker starts a worker binary on a free loopback port with the e2e
// config and waits until /readyz answers 200. It returns the worker's
// host:port.
func startWorker(t *testing.T, name, bin string, env []string) string {
	t.Helper()
	w := workertest.Start(t, workertest.Options{Bin: bin, Config: e2eWorkerConfig, Env: env, LogLevel: "info"})
	w.WaitFor(t, name+" /readyz 200", time.Minute, func() bool { return w.Status("/readyz") == 200 })
	return w.Addr
}

// testRules returns alerts.yml with the "for" of WorkerDatabaseHandlesLeaking
// shortened to handlesAlertFor, so that it fires within a short test.
func testRules(t *testing.T) []byte {
	t.Helper()
	return testRulesWith(t, map[string]string{"WorkerDatabaseHandlesLeaking": handlesAlertFor})
}

// testRulesWith returns alerts.yml with the "for" of each alert named in
// fors replaced by its value; every other rule is as shipped.
func testRulesWith(t *testing.T, fors map[string]string) []byte {
	t.Helper()
	var doc map[string]any
	if err := yaml.Unmarshal(readFile(t, "deploy", "prometheus", "alerts.yml"), &doc); err != nil {
		t.Fatal(err)
	}
	changed := map[string]int{}
	for _, g := range doc["groups"].([]any) {
		for _, r := range g.(map[string]any)["rules"].([]any) {
			m := r.(map[string]any)
			name, _ := m["alert"].(string)
			if f, ok := fors[name]; ok {
				m["for"] = f
				changed[name]++
			}
		}
	}
	for name := range fors {
		if changed[name] != 1 {
			t.Fatalf("alerts.yml: found %s %d times, want 1", name, changed[name])
		}
	}
	b, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type alertState struct {
	Labels   map[string]string `json:"labels"`
	State    string            `json:"state"`
	ActiveAt time.Time         `json:"activeAt"`
}

func (p promAPI) alerts() ([]alertState, error) {
	data, err := p.get("/api/v1/alerts", nil)
	if err != nil {
		return nil, err
	}
	var d struct {
		Alerts []alertState `json:"alerts"`
	}
	err = json.Unmarshal(data, &d)
	return d.Alerts, err
}

// TestE2E_PrometheusScrapesWorker starts a clean worker and a leak-injected
// one (WORKER_LEAK=handle: every job run opens a new *sql.DB and keeps it),
// lets a real Prometheus scrape both every second for at least 30 s with the
// shipped rules, and then checks the dashboard, the rules and the alerts.
func TestE2E_PrometheusScrapesWorker(t *testing.T) {
	t.Parallel()
	promBin := prometheus(t)
	promtoolBin := promtool(t)
	clean := startWorker(t, "worker", workertest.BuildOnce(t, ""), nil)
	leakBin := workertest.BuildOnce(t, "leak")
	leakStart := time.Now()
	leak := startWorker(t, "worker-leak", leakBin, []string{"WORKER_LEAK=handle"})

	t.Run("PromtoolCheckMetrics", func(t *testing.T) {
		code, body, err := httpGet("http://" + clean + "/metrics")
		if err != nil || code != 200 {
			t.Fatalf("GET /metrics: %d, %v", code, err)
		}
		out, err := run(t, "", body, promtoolBin, "check", "metrics")
		if err != nil || strings.TrimSpace(out) != "" {
			t.Errorf("promtool check metrics on a real scrape: %v, want no error and no output; got:\n%s", err, out)
		}
	})

	api := startPrometheus(t, promBin, promtoolBin, testRules(t), clean, leak)

	// Scrape for at least 30 s; meanwhile watch for the handles alert.
	var firedAfter time.Duration
	scrapeStart := time.Now()
	eventually(t, 3*time.Minute, 500*time.Millisecond, "30 s of scrapes and WorkerDatabaseHandlesLeaking firing", func() error {
		if firedAfter == 0 {
			alerts, err := api.alerts()
			if err != nil {
				return err
			}
			for _, a := range alerts {
				if a.Labels["alertname"] == "WorkerDatabaseHandlesLeaking" && a.Labels["instance"] == leak && a.State == "firing" {
					firedAfter = time.Since(leakStart)
				}
			}
		}
		if err := scrapedAtLeast(api, e2eScrape, clean, leak); err != nil {
			return err
		}
		if firedAfter == 0 {
			return fmt.Errorf("WorkerDatabaseHandlesLeaking not firing for %s", leak)
		}
		return nil
	})
	t.Logf("scraped for %v; WorkerDatabaseHandlesLeaking (for: %s in the test copy) fired %v after the leak worker started",
		time.Since(scrapeStart).Round(time.Second), handlesAlertFor, firedAfter.Round(100*time.Millisecond))

	t.Run("LeakWorkerShowsLeak", func(t *testing.T) {
		v, err := api.query(fmt.Sprintf(`worker_db_handles_open{instance=%q}`, leak))
		if err != nil || len(v) != 1 {
			t.Fatalf("worker_db_handles_open of the leak worker: %v, %v", v, err)
		}
		if n, _ := strconv.ParseFloat(v[0].Value[1].(string), 64); n <= 1 {
			t.Errorf("worker_db_handles_open of the leak worker = %v, want > 1", n)
		}
		v, err = api.query(fmt.Sprintf(`worker_db_handles_open{instance=%q}`, clean))
		if err != nil || len(v) != 1 {
			t.Fatalf("worker_db_handles_open of the clean worker: %v, %v", v, err)
		}
		if got, want := v[0].Value[1], "1"; got != want {
			t.Errorf("worker_db_handles_open of the clean worker = %v, want %v", got, want)
		}
	})

	t.Run("CleanWorkerFiresNoAlert", func(t *testing.T) {
		alerts, err := api.alerts()
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range alerts {
			inst, ok := a.Labels["instance"]
			if ok && inst != clean {
				continue
			}
			if a.State == "firing" {
				t.Errorf("alert %s is firing for the clean worker: %v", a.Labels["alertname"], a.Labels)
			} else {
				t.Logf("alert %s is %s for the clean worker (its \"for\" has not passed)", a.Labels["alertname"], a.State)
			}
		}
		// The instantaneous alerts must not even be pending.
		for _, r := range loadAlerts(t).alerts() {
			switch r.Alert {
			case "WorkerDatabaseHandlesLeaking", "WorkerDatabaseQuickCheckFailed", "WorkerJobFailing",
				"WorkerDatabasePoolSaturated", "WorkerDown", "WorkerAbsent", "WorkerFileDescriptorsNearLimit",
				"WorkerDatabaseServerConnectionsUncounted":
				v, err := api.query(fmt.Sprintf(`(%s) and on (instance) up{instance=%q}`, r.Expr, clean))
				if r.Alert == "WorkerAbsent" {
					v, err = api.query(r.Expr)
				}
				if err != nil {
					t.Errorf("%s: %v", r.Alert, err)
				} else if len(v) != 0 {
					t.Errorf("%s: expression true for the clean worker: %v", r.Alert, v)
				}
			}
		}
	})

	// The scrape config above is the default one (honor_labels false): no
	// label of the worker's may collide with a target label and come back
	// renamed with the exported_ prefix.
	t.Run("NoExportedLabels", func(t *testing.T) {
		v, err := api.query(`count by (__name__) ({exported_job!=""} or {exported_instance!=""})`)
		if err != nil {
			t.Fatal(err)
		}
		if len(v) != 0 {
			t.Errorf("series with an exported_ label under the default scrape config: %v", v)
		}
		v, err = api.query(fmt.Sprintf(`worker_job_runs_total{job="worker", instance=%q, job_name="heartbeat", result="success"}`, clean))
		if err != nil || len(v) != 1 {
			t.Errorf("worker_job_runs_total{job_name=\"heartbeat\"} with the target's job and instance: got %v, %v; want one series", v, err)
		}
	})

	t.Run("RuleExpressions", func(t *testing.T) {
		f := loadAlerts(t)
		n := 0
		for _, g := range f.Groups {
			for _, r := range g.Rules {
				n++
				name := r.Alert + r.Record
				if _, err := api.query(r.Expr); err != nil {
					t.Errorf("rule %s: %v\nexpr: %s", name, err, r.Expr)
				}
				if r.Record != "" {
					if _, err := api.query(r.Record); err != nil {
						t.Errorf("recording rule %s: %v", name, err)
					}
				}
			}
		}
		v, err := api.query(fmt.Sprintf(`instance:worker_fd_utilization:ratio{instance=%q}`, clean))
		if err != nil || len(v) != 1 {
			t.Errorf("instance:worker_fd_utilization:ratio for the clean worker: %v, %v; want one sample", v, err)
		}
		if loaded := checkRulesHealthy(t, api); loaded != n {
			t.Errorf("Prometheus loaded %d rules, want %d", loaded, n)
		}
		t.Logf("%d rule expressions parsed and evaluated", n)
	})

	t.Run("DashboardQueries", func(t *testing.T) {
		sub := strings.NewReplacer(
			"$job", "worker",
			"$instance", clean,
			"$__rate_interval", "1m",
			"$__interval", "15s",
			"$__range", "5m",
		)
		checkDashboardQueries(t, api, sub, "sqlite")
	})
}

type dashQuery struct {
	where    string
	expr     string
	needData bool
	row      string // the title of the panel's row
	repeat   string // the variable the panel's row repeats over, or ""
}

// pgRow is the title of the dashboard's row of PostgreSQL-only panels,
// shown only where a selected worker runs on PostgreSQL (backendRows).
const pgRow = "PostgreSQL replicas"

// dashboardQueries returns every query of the dashboard: the panel targets,
// which must return data where their row is shown, and the annotation and
// variable queries, which must parse. Grafana's label_values(selector,
// label) becomes its selector, query_result(expr) its expr; vars maps each
// query variable to that query.
func dashboardQueries(t *testing.T) (out []dashQuery, vars map[string]string) {
	t.Helper()
	d := loadDashboard(t)
	for _, rp := range panelsByRow(d) {
		p := rp.panel
		for _, tg := range promTargets(t, p) {
			out = append(out, dashQuery{where: fmt.Sprintf("panel %q target %s", deref(p.Title), deref(tg.RefId)),
				expr: tg.Expr, needData: true, row: rp.row, repeat: rp.repeat})
		}
	}
	for _, a := range d.Annotations.List {
		if deref(a.Expr) != "" {
			out = append(out, dashQuery{where: "annotation " + a.Name, expr: *a.Expr})
		}
	}
	vars = map[string]string{}
	for _, v := range d.Templating.List {
		if v.Type != gdash.VariableTypeQuery {
			continue
		}
		def := deref(v.Definition)
		var expr string
		if sel, ok := strings.CutPrefix(def, "label_values("); ok {
			expr = sel[:strings.LastIndex(sel, ",")]
		} else if q, ok := strings.CutPrefix(def, "query_result("); ok {
			expr = strings.TrimSuffix(q, ")")
		} else {
			t.Errorf("variable %s: definition %q: want label_values(...) or query_result(...)", v.Name, def)
			continue
		}
		vars[v.Name] = expr
		// A backend's variable has a value only on that backend.
		out = append(out, dashQuery{where: "variable " + v.Name, expr: expr, needData: !isBackendVar(v.Name)})
	}
	return out, vars
}

func isBackendVar(name string) bool {
	for _, v := range backendRows {
		if v == name {
			return true
		}
	}
	return false
}

// checkDashboardQueries runs every query of the dashboard against api with
// sub's substitutions, and checks that exactly the backend rows of shown
// (a variable name of backendRows) are shown, and that every shown panel
// has data.
func checkDashboardQueries(t *testing.T, api promAPI, sub *strings.Replacer, shown string) {
	t.Helper()
	queries, vars := dashboardQueries(t)
	visible := map[string]bool{"": true}
	for _, name := range backendRows {
		v, err := api.query(sub.Replace(vars[name]))
		if err != nil {
			t.Errorf("variable %s: %v", name, err)
		}
		visible[name] = len(v) > 0
		if visible[name] != (name == shown) {
			t.Errorf("the row repeated over $%s: shown %v, want %v (this worker's backend: %s)", name, visible[name], name == shown, shown)
		}
	}
	ran, hidden := 0, 0
	for _, q := range queries {
		expr := sub.Replace(q.expr)
		if strings.Contains(expr, "$") {
			t.Errorf("%s: a variable is left after substitution: %s", q.where, expr)
			continue
		}
		v, err := api.query(expr)
		ran++
		switch {
		case err != nil:
			t.Errorf("%s: %v\nquery: %s", q.where, err, expr)
		case !visible[q.repeat]:
			hidden++
		case len(v) == 0 && q.needData:
			t.Errorf("%s: no data against healthy workers on %s\nquery: %s", q.where, shown, expr)
		}
	}
	t.Logf("%d dashboard queries run on %s, %d of them in rows hidden there", ran, shown, hidden)
}

// checkRulesHealthy checks that Prometheus evaluated every rule it loaded
// without error, and returns how many it loaded.
func checkRulesHealthy(t *testing.T, api promAPI) int {
	t.Helper()
	data, err := api.get("/api/v1/rules", nil)
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Rules []struct {
				Name      string `json:"name"`
				Health    string `json:"health"`
				LastError string `json:"lastError"`
			} `json:"rules"`
		} `json:"groups"`
	}
	if err := json.Unmarshal(data, &rules); err != nil {
		t.Fatal(err)
	}
	loaded := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			loaded++
			if r.Health != "ok" {
				t.Errorf("rule %s: health %q: %s", r.Name, r.Health, r.LastError)
			}
		}
	}
	return loaded
}
