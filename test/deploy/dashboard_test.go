package deploy_test

import (
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/goccy/go-yaml"
	gcommon "github.com/grafana/grafana-foundation-sdk/go/common"
	gdash "github.com/grafana/grafana-foundation-sdk/go/dashboard"
	gprom "github.com/grafana/grafana-foundation-sdk/go/prometheus"
)

// loadDashboard strictly decodes grafana/dashboards/worker.json into the
// grafana-foundation-sdk's dashboard types (decodeDashboard).
func loadDashboard(t testing.TB) grafanaDashboard {
	t.Helper()
	d, err := decodeDashboard(readFile(t, "grafana", "dashboards", "worker.json"))
	if err != nil {
		t.Fatalf("grafana/dashboards/worker.json: %v", err)
	}
	return d
}

// allPanels returns the panels that show data: rows are flattened away.
func allPanels(d grafanaDashboard) []gdash.Panel {
	var out []gdash.Panel
	for _, p := range d.Panels {
		if p.RowPanel != nil {
			out = append(out, p.RowPanel.Panels...)
			continue
		}
		if p.Panel != nil {
			out = append(out, *p.Panel)
		}
	}
	return out
}

// rowPanel is a panel that shows data, the title of its row, and the
// variable the row repeats over ("" for none): a row repeated over a
// variable without values is not shown.
type rowPanel struct {
	row, repeat string
	panel       gdash.Panel
}

// panelsByRow returns the panels of allPanels, each with the title of its
// row: a collapsed row holds its panels, an open one is followed by them.
func panelsByRow(d grafanaDashboard) []rowPanel {
	var out []rowPanel
	row, repeat := "", ""
	for _, p := range d.Panels {
		switch {
		case p.RowPanel != nil:
			row, repeat = deref(p.RowPanel.Title), deref(p.RowPanel.Repeat)
			for _, q := range p.RowPanel.Panels {
				out = append(out, rowPanel{row, repeat, q})
			}
		case p.Panel != nil:
			out = append(out, rowPanel{row, repeat, *p.Panel})
		}
	}
	return out
}

// backendRows are the rows shown only where their backend's metrics are:
// each repeats over a hidden variable whose query_result has a value only
// when a selected worker exports the row's metric (issue 18: on SQLite the
// PostgreSQL row's panels showed No data, and the reverse).
var backendRows = map[string]string{"SQLite": "sqlite", pgRow: "postgres"}

// Ensure each backend's row repeats over its hidden variable, and that the
// variable's query reads a metric only that backend exports.
func TestDashboard_BackendRows(t *testing.T) {
	d := loadDashboard(t)
	repeats := map[string]string{}
	for _, rp := range panelsByRow(d) {
		repeats[rp.row] = rp.repeat
	}
	vars := map[string]gdash.VariableModel{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v
	}
	for row, name := range backendRows {
		if got := repeats[row]; got != name {
			t.Errorf("row %q repeats over %q, want %q", row, got, name)
		}
		v, ok := vars[name]
		if !ok {
			t.Errorf("no variable %s", name)
			continue
		}
		if v.Hide == nil || *v.Hide != gdash.VariableHideHideVariable || deref(v.Multi) || deref(v.IncludeAll) {
			t.Errorf("variable %s: want hidden, single-valued, without All", name)
		}
		if _, ok := strings.CutPrefix(deref(v.Definition), "query_result("); !ok {
			t.Errorf("variable %s: definition %q, want query_result(...)", name, deref(v.Definition))
		}
		// Grafana lists a query_result as `{labels} value timestamp` and
		// keeps the regex's first group: one value, the backend's name.
		re, err := regexp.Compile(strings.Trim(deref(v.Regex), "/"))
		if err != nil {
			t.Errorf("variable %s: regex %q: %v", name, deref(v.Regex), err)
			continue
		}
		line := fmt.Sprintf(`{backend=%q} 3 1765100000000`, name)
		if m := re.FindStringSubmatch(line); len(m) != 2 || m[1] != name {
			t.Errorf("variable %s: regex %q on %s: got %q, want the group %q", name, deref(v.Regex), line, m, name)
		}
	}
	for _, rp := range panelsByRow(d) {
		if rp.row != "SQLite" {
			continue
		}
		for _, tg := range promTargets(t, rp.panel) {
			if !sqliteOnlyRE.MatchString(tg.Expr) {
				t.Errorf("panel %q in the SQLite row reads no SQLite-only series: %s", deref(rp.panel.Title), tg.Expr)
			}
		}
	}
}

// promTargets returns the queries of a panel; every one must be a
// Prometheus query.
func promTargets(t testing.TB, p gdash.Panel) []*gprom.Dataquery {
	t.Helper()
	var out []*gprom.Dataquery
	for i, tg := range p.Targets {
		q, ok := tg.(*gprom.Dataquery)
		if !ok {
			t.Fatalf("panel %q target %d: %T, want a Prometheus query", deref(p.Title), i, tg)
		}
		out = append(out, q)
	}
	return out
}

// deref is the value of an optional field of the SDK's types, or its zero.
func deref[T any](p *T) T {
	if p == nil {
		var zero T
		return zero
	}
	return *p
}

// dsUID is the uid of an optional data source reference.
func dsUID(ds *gcommon.DataSourceRef) string {
	if ds == nil {
		return ""
	}
	return deref(ds.Uid)
}

var rateRE = regexp.MustCompile(`\b(rate|irate|increase|deriv|delta)\([^\[]*\[([^\]]+)\]`)

// TestDashboard_Structure checks what Grafana's dashboard linter would: a
// stable uid, a datasource variable used by every panel and target, job and
// instance variables used by every query, $__rate_interval in every rate,
// and a unit and a description on every panel.
func TestDashboard_Structure(t *testing.T) {
	d := loadDashboard(t)
	if got, want := deref(d.Uid), "sqlworker-worker"; got != want {
		t.Errorf("uid = %q, want %q (a stable uid updates the dashboard instead of duplicating it)", got, want)
	}
	if deref(d.Title) == "" || d.SchemaVersion < 36 {
		t.Errorf("title %q, schemaVersion %d: want a title and schemaVersion >= 36", deref(d.Title), d.SchemaVersion)
	}

	vars := map[string]bool{}
	for _, v := range d.Templating.List {
		vars[v.Name] = true
		switch v.Name {
		case "datasource":
			if v.Type != gdash.VariableTypeDatasource || v.Query == nil || deref(v.Query.String) != "prometheus" {
				t.Errorf("variable datasource: type %q query %+v, want datasource/prometheus", v.Type, v.Query)
			}
		case "job", "instance":
			if v.Type != gdash.VariableTypeQuery || dsUID(v.Datasource) != "${datasource}" || !deref(v.Multi) || !deref(v.IncludeAll) || deref(v.AllValue) != ".+" {
				t.Errorf("variable %s: want a multi-value query variable on ${datasource} with All = .+, got %+v", v.Name, v)
			}
		}
	}
	for _, want := range []string{"datasource", "job", "instance"} {
		if !vars[want] {
			t.Errorf("no %s variable", want)
		}
	}

	ids := map[uint32]bool{}
	rows := 0
	for _, p := range d.Panels {
		var id uint32
		switch {
		case p.RowPanel != nil:
			rows++
			id = p.RowPanel.Id
		case p.Panel != nil:
			id = deref(p.Panel.Id)
		}
		if ids[id] {
			t.Errorf("panel id %d used twice", id)
		}
		ids[id] = true
	}
	panels := allPanels(d)
	if len(panels) < 20 || rows < 5 {
		t.Errorf("%d panels in %d rows, want the rows of issue 4 (connections, FDs, goroutines and memory, jobs, database)", len(panels), rows)
	}
	for _, p := range panels {
		where := "panel " + deref(p.Title)
		if deref(p.Title) == "" {
			t.Errorf("panel %d has no title", deref(p.Id))
		}
		if len(deref(p.Description)) < 20 {
			t.Errorf("%s: description %q, want a real one", where, deref(p.Description))
		}
		if p.FieldConfig == nil || deref(p.FieldConfig.Defaults.Unit) == "" {
			t.Errorf("%s: no unit", where)
		}
		if dsUID(p.Datasource) != "${datasource}" {
			t.Errorf("%s: datasource %+v, want ${datasource}", where, p.Datasource)
		}
		if g := p.GridPos; g == nil || g.W == 0 || g.H == 0 || g.X+g.W > 24 {
			t.Errorf("%s: gridPos %+v out of the 24-column grid", where, g)
		}
		if len(p.Targets) == 0 {
			t.Errorf("%s: no query", where)
		}
		for _, tg := range promTargets(t, p) {
			refID := deref(tg.RefId)
			if dsUID(tg.Datasource) != "${datasource}" {
				t.Errorf("%s target %s: datasource %+v, want ${datasource}", where, refID, tg.Datasource)
			}
			if !strings.Contains(tg.Expr, `job=~"$job"`) || !strings.Contains(tg.Expr, `instance=~"$instance"`) {
				t.Errorf("%s target %s: want job=~\"$job\" and instance=~\"$instance\" matchers: %s", where, refID, tg.Expr)
			}
			for _, m := range rateRE.FindAllStringSubmatch(tg.Expr, -1) {
				if m[2] != "$__rate_interval" {
					t.Errorf("%s target %s: %s over [%s], want [$__rate_interval]", where, refID, m[1], m[2])
				}
			}
		}
	}
}

// TestDashboard_PostgresRow checks the row of PostgreSQL-only panels, whose
// queries the SQLite end-to-end test lets return nothing: each of its panels
// reads a series only PostgreSQL replicas export (so that no panel that
// SQLite could fill hides there), and together they show every one of
// those series and the client's count of connections beside the server's.
func TestDashboard_PostgresRow(t *testing.T) {
	shown := map[string]bool{}
	panels := 0
	for _, rp := range panelsByRow(loadDashboard(t)) {
		if rp.row != pgRow {
			continue
		}
		panels++
		pgOnly := false
		for _, tg := range promTargets(t, rp.panel) {
			for _, m := range append(append([]string(nil), pgOnlyMetrics...), "worker_db_connections_open") {
				if regexp.MustCompile(`\b` + m + `\b`).MatchString(tg.Expr) {
					shown[m] = true
					pgOnly = pgOnly || m != "worker_db_connections_open"
				}
			}
		}
		if !pgOnly {
			t.Errorf("panel %q in the row %q reads no PostgreSQL-only series %v", deref(rp.panel.Title), pgRow, pgOnlyMetrics)
		}
	}
	if panels == 0 {
		t.Fatalf("the dashboard has no row %q", pgRow)
	}
	for _, m := range append(append([]string(nil), pgOnlyMetrics...), "worker_db_connections_open") {
		if !shown[m] {
			t.Errorf("no panel of the row %q shows %s", pgRow, m)
		}
	}
}

// TestDashboard_StrictDecoding proves that loadDashboard refuses what
// Grafana's schema does not know: each case changes one field of the
// shipped dashboard and must fail, naming it.
func TestDashboard_StrictDecoding(t *testing.T) {
	raw := string(readFile(t, "grafana", "dashboards", "worker.json"))
	if _, err := decodeDashboard([]byte(raw)); err != nil {
		t.Fatalf("grafana/dashboards/worker.json: %v", err)
	}
	for _, tc := range []struct {
		name, old, new, want string
	}{
		{"misspelt panel field", `"title": "Up",`, `"title": "Up", "descriptionn": "x",`, `unexpected field 'descriptionn'`},
		{"heatmap tooltip.show", `"mode": "single",` + "\n          \"yHistogram\"", `"show": true,` + "\n          \"yHistogram\"", `unexpected field 'show'`},
		{"fieldConfig", `"unit": "none",`, `"unit": "none", "unitt": "s",`, `panels[1].fieldConfig.defaults.unitt: unknown to the SDK`},
		{"wrong type", `"multi": true,`, `"multi": "yes",`, `cannot unmarshal string`},
		{"duplicate field", `"uid": "sqlworker-worker",`, `"uid": "sqlworker-worker", "uid": "other",`, `duplicate field "uid"`},
		{"required field Grafana does not fill", `"schemaVersion": 39,`, ``, `schemaVersion: required field is missing`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(raw, tc.old) {
				t.Fatalf("worker.json has no %q", tc.old)
			}
			_, err := decodeDashboard([]byte(strings.Replace(raw, tc.old, tc.new, 1)))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error containing %s", err, tc.want)
			}
		})
	}
}

// TestDashboard_UsesContractMetrics checks that every metric name in the
// dashboard is one that docs/metrics.md documents (or the standard
// up/process/go series), so a misspelt name fails here as well as in the
// end-to-end test.
func TestDashboard_UsesContractMetrics(t *testing.T) {
	doc := string(readFile(t, "docs", "metrics.md"))
	nameRE := regexp.MustCompile(`\b((?:worker|go_sql)_[a-z_]+)`)
	for _, p := range allPanels(loadDashboard(t)) {
		for _, tg := range promTargets(t, p) {
			for _, m := range nameRE.FindAllString(tg.Expr, -1) {
				base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(m, "_bucket"), "_count"), "_sum")
				if !strings.Contains(doc, "`"+base+"`") {
					t.Errorf("panel %q: metric %s is not in docs/metrics.md", deref(p.Title), m)
				}
			}
		}
	}
}

// TestGrafana_Provisioning checks the datasource and dashboard provisioning
// that compose mounts.
func TestGrafana_Provisioning(t *testing.T) {
	var ds struct {
		APIVersion  int `yaml:"apiVersion"`
		Datasources []struct {
			Name, Type, UID, URL, Access string
		} `yaml:"datasources"`
	}
	if err := yaml.Unmarshal(readFile(t, "grafana", "provisioning", "datasources", "prometheus.yml"), &ds); err != nil {
		t.Fatal(err)
	}
	if ds.APIVersion != 1 || len(ds.Datasources) != 1 || ds.Datasources[0].Type != "prometheus" || ds.Datasources[0].URL != "http://prometheus:9090" {
		t.Errorf("datasource provisioning = %+v, want one prometheus datasource at http://prometheus:9090 (the compose service)", ds)
	}
	var dp struct {
		APIVersion int `yaml:"apiVersion"`
		Providers  []struct {
			Name    string `yaml:"name"`
			Type    string `yaml:"type"`
			Options struct {
				Path string `yaml:"path"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	if err := yaml.Unmarshal(readFile(t, "grafana", "provisioning", "dashboards", "worker.yml"), &dp); err != nil {
		t.Fatal(err)
	}
	if dp.APIVersion != 1 || len(dp.Providers) != 1 || dp.Providers[0].Type != "file" {
		t.Fatalf("dashboard provisioning = %+v, want one file provider", dp)
	}
	// compose mounts grafana/dashboards at the provider's path.
	compose := string(readFile(t, "deploy", "docker", "compose.yaml"))
	if want := "../../grafana/dashboards:" + dp.Providers[0].Options.Path + ":ro"; !strings.Contains(compose, want) {
		t.Errorf("compose.yaml does not mount %q", want)
	}
}
