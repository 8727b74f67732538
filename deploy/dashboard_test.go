package deploy_test

import (
	"bytes"
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/goccy/go-yaml"
)

// dashboard is the part of the Grafana dashboard JSON model the tests read.
type dashboard struct {
	UID           string  `json:"uid"`
	Title         string  `json:"title"`
	SchemaVersion int     `json:"schemaVersion"`
	Panels        []panel `json:"panels"`
	Annotations   struct {
		List []struct {
			Name       string     `json:"name"`
			Expr       string     `json:"expr"`
			Datasource datasource `json:"datasource"`
		} `json:"list"`
	} `json:"annotations"`
	Templating struct {
		List []struct {
			Type       string     `json:"type"`
			Name       string     `json:"name"`
			Query      any        `json:"query"`
			Definition string     `json:"definition"`
			Datasource datasource `json:"datasource"`
			Multi      bool       `json:"multi"`
			IncludeAll bool       `json:"includeAll"`
			AllValue   string     `json:"allValue"`
		} `json:"list"`
	} `json:"templating"`
}

type datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type panel struct {
	ID          int        `json:"id"`
	Type        string     `json:"type"`
	Title       string     `json:"title"`
	Description string     `json:"description"`
	Datasource  datasource `json:"datasource"`
	GridPos     struct {
		H, W, X, Y int
	} `json:"gridPos"`
	FieldConfig struct {
		Defaults struct {
			Unit string `json:"unit"`
		} `json:"defaults"`
	} `json:"fieldConfig"`
	Targets []struct {
		RefID      string     `json:"refId"`
		Expr       string     `json:"expr"`
		Datasource datasource `json:"datasource"`
	} `json:"targets"`
	Panels []panel `json:"panels"`
}

func loadDashboard(t testing.TB) dashboard {
	t.Helper()
	var d dashboard
	dec := json.NewDecoder(bytes.NewReader(readFile(t, "grafana", "dashboards", "worker.json")))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("grafana/dashboards/worker.json: %v", err)
	}
	return d
}

// allPanels returns the panels that show data: rows are flattened away.
func (d dashboard) allPanels() []panel {
	var out []panel
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			if p.Type == "row" {
				walk(p.Panels)
				continue
			}
			out = append(out, p)
		}
	}
	walk(d.Panels)
	return out
}

var rateRE = regexp.MustCompile(`\b(rate|irate|increase|deriv|delta)\([^\[]*\[([^\]]+)\]`)

// TestDashboard_Structure checks what Grafana's dashboard linter would: a
// stable uid, a datasource variable used by every panel and target, job and
// instance variables used by every query, $__rate_interval in every rate,
// and a unit and a description on every panel.
func TestDashboard_Structure(t *testing.T) {
	d := loadDashboard(t)
	if got, want := d.UID, "sqlworker-worker"; got != want {
		t.Errorf("uid = %q, want %q (a stable uid updates the dashboard instead of duplicating it)", got, want)
	}
	if d.Title == "" || d.SchemaVersion < 36 {
		t.Errorf("title %q, schemaVersion %d: want a title and schemaVersion >= 36", d.Title, d.SchemaVersion)
	}

	vars := map[string]bool{}
	for _, v := range d.Templating.List {
		vars[v.Name] = true
		switch v.Name {
		case "datasource":
			if v.Type != "datasource" || v.Query != "prometheus" {
				t.Errorf("variable datasource: type %q query %v, want datasource/prometheus", v.Type, v.Query)
			}
		case "job", "instance":
			if v.Type != "query" || v.Datasource.UID != "${datasource}" || !v.Multi || !v.IncludeAll || v.AllValue != ".+" {
				t.Errorf("variable %s: want a multi-value query variable on ${datasource} with All = .+, got %+v", v.Name, v)
			}
		}
	}
	for _, want := range []string{"datasource", "job", "instance"} {
		if !vars[want] {
			t.Errorf("no %s variable", want)
		}
	}

	ids := map[int]bool{}
	rows := 0
	for _, p := range d.Panels {
		if p.Type == "row" {
			rows++
		}
		if ids[p.ID] {
			t.Errorf("panel id %d used twice", p.ID)
		}
		ids[p.ID] = true
	}
	panels := d.allPanels()
	if len(panels) < 20 || rows < 5 {
		t.Errorf("%d panels in %d rows, want the rows of issue 4 (connections, FDs, goroutines and memory, jobs, database)", len(panels), rows)
	}
	for _, p := range panels {
		where := "panel " + p.Title
		if p.Title == "" {
			t.Errorf("panel %d has no title", p.ID)
		}
		if len(p.Description) < 20 {
			t.Errorf("%s: description %q, want a real one", where, p.Description)
		}
		if p.FieldConfig.Defaults.Unit == "" {
			t.Errorf("%s: no unit", where)
		}
		if p.Datasource.UID != "${datasource}" {
			t.Errorf("%s: datasource %+v, want ${datasource}", where, p.Datasource)
		}
		if p.GridPos.W <= 0 || p.GridPos.H <= 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("%s: gridPos %+v out of the 24-column grid", where, p.GridPos)
		}
		if len(p.Targets) == 0 {
			t.Errorf("%s: no query", where)
		}
		for _, tg := range p.Targets {
			if tg.Datasource.UID != "${datasource}" {
				t.Errorf("%s target %s: datasource %+v, want ${datasource}", where, tg.RefID, tg.Datasource)
			}
			if !strings.Contains(tg.Expr, `job=~"$job"`) || !strings.Contains(tg.Expr, `instance=~"$instance"`) {
				t.Errorf("%s target %s: want job=~\"$job\" and instance=~\"$instance\" matchers: %s", where, tg.RefID, tg.Expr)
			}
			for _, m := range rateRE.FindAllStringSubmatch(tg.Expr, -1) {
				if m[2] != "$__rate_interval" {
					t.Errorf("%s target %s: %s over [%s], want [$__rate_interval]", where, tg.RefID, m[1], m[2])
				}
			}
		}
	}
}

// TestDashboard_UsesContractMetrics checks that every metric name in the
// dashboard is one that docs/metrics.md documents (or the standard
// up/process/go series), so a misspelt name fails here as well as in the
// end-to-end test.
func TestDashboard_UsesContractMetrics(t *testing.T) {
	doc := string(readFile(t, "docs", "metrics.md"))
	nameRE := regexp.MustCompile(`\b((?:worker|go_sql)_[a-z_]+)`)
	for _, p := range loadDashboard(t).allPanels() {
		for _, tg := range p.Targets {
			for _, m := range nameRE.FindAllString(tg.Expr, -1) {
				base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(m, "_bucket"), "_count"), "_sum")
				if !strings.Contains(doc, "`"+base+"`") {
					t.Errorf("panel %q: metric %s is not in docs/metrics.md", p.Title, m)
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
