package deploy_test

import (
	"net/url"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-yaml"
)

// strictCompose is the part of the Compose Specification that
// compose-postgres.yaml uses, decoded strictly (yaml.Strict): a field
// outside it, misspelt or not, fails the test, as docker compose config
// would refuse an unknown one. No compose-spec module is in go.mod, so the
// types are the spec's fields, written out.
type strictCompose struct {
	Name     string                    `yaml:"name"`
	Services map[string]composeService `yaml:"services"`
	Secrets  map[string]struct {
		File string `yaml:"file"`
	} `yaml:"secrets"`
	Volumes map[string]struct{} `yaml:"volumes"`
}

type composeService struct {
	Build *struct {
		Context    string `yaml:"context"`
		Dockerfile string `yaml:"dockerfile"`
	} `yaml:"build"`
	Image           string            `yaml:"image"`
	Restart         string            `yaml:"restart"`
	Command         []string          `yaml:"command"`
	Environment     map[string]string `yaml:"environment"`
	Secrets         []string          `yaml:"secrets"`
	Volumes         []string          `yaml:"volumes"`
	Ports           []string          `yaml:"ports"`
	StopGracePeriod string            `yaml:"stop_grace_period"`
	ReadOnly        bool              `yaml:"read_only"`
	Tmpfs           []string          `yaml:"tmpfs"`
	CapDrop         []string          `yaml:"cap_drop"`
	SecurityOpt     []string          `yaml:"security_opt"`
	Ulimits         map[string]struct {
		Soft int `yaml:"soft"`
		Hard int `yaml:"hard"`
	} `yaml:"ulimits"`
	Healthcheck *struct {
		Test     []string `yaml:"test"`
		Interval string   `yaml:"interval"`
		Timeout  string   `yaml:"timeout"`
		Retries  int      `yaml:"retries"`
	} `yaml:"healthcheck"`
	// depends_on in either of the spec's forms: a list of names, or a map
	// of name to condition.
	DependsOn any `yaml:"depends_on"`
}

func loadStrictCompose(t testing.TB, name string) strictCompose {
	t.Helper()
	var c strictCompose
	if err := yaml.UnmarshalWithOptions(readFile(t, "deploy", "docker", name), &c, yaml.Strict()); err != nil {
		t.Fatalf("deploy/docker/%s: %v", name, err)
	}
	return c
}

// TestDocker_ComposePostgres checks compose-postgres.yaml: PostgreSQL, three
// worker replicas built from the Dockerfile, each with its own replica id,
// the URL on the command line without a password and the password as a
// secret file that the image's user can read, and Prometheus scraping every
// replica with the rules, and Grafana with the dashboard.
func TestDocker_ComposePostgres(t *testing.T) {
	c := loadStrictCompose(t, "compose-postgres.yaml")
	base := repoPath(t, "deploy", "docker")
	pg, ok := c.Services["postgres"]
	if !ok {
		t.Fatal("compose-postgres.yaml: no service postgres")
	}
	if !strings.HasPrefix(pg.Image, "postgres:") {
		t.Errorf("postgres image %q, want the official postgres image", pg.Image)
	}
	if pg.Healthcheck == nil || len(pg.Healthcheck.Test) < 2 || pg.Healthcheck.Test[1] != "pg_isready" {
		t.Errorf("postgres healthcheck %+v, want pg_isready", pg.Healthcheck)
	}
	if _, ok := pg.Environment["POSTGRES_PASSWORD"]; ok {
		t.Error("postgres: POSTGRES_PASSWORD in the compose file; want POSTGRES_PASSWORD_FILE and a secret")
	}
	pgSecret := secretOf(t, "postgres", pg, pg.Environment["POSTGRES_PASSWORD_FILE"])

	// Secrets are files of the repository that the image's USER can read:
	// compose's file secrets are bind mounts with the host file's mode.
	for name, s := range c.Secrets {
		fi, err := os.Stat(filepath.Join(base, s.File))
		if err != nil {
			t.Errorf("secret %s: %v", name, err)
			continue
		}
		ignore := strings.Split(string(readFile(t, "deploy", "docker", "Dockerfile.dockerignore")), "\n")
		rel, _ := filepath.Rel(repoRoot(t), filepath.Join(base, s.File))
		if !slices.Contains(ignore, rel) {
			t.Errorf("secret %s: %s is not in Dockerfile.dockerignore: the build's COPY . . would take it into the build context", name, rel)
		}
		if fi.Mode().Perm()&0o004 == 0 {
			t.Errorf("secret %s: %s has mode %v; the worker runs as the Dockerfile's USER 65532 and cannot read it", name, s.File, fi.Mode().Perm())
		}
	}
	if _, ok := c.Secrets[pgSecret]; !ok {
		t.Errorf("secret %q of postgres is not declared", pgSecret)
	}

	var workers []string
	for name := range c.Services {
		if strings.HasPrefix(name, "worker") {
			workers = append(workers, name)
		}
	}
	sort.Strings(workers)
	if len(workers) != 3 {
		t.Fatalf("worker services %v, want 3 replicas", workers)
	}
	ids, hostPorts := map[string]string{}, map[string]string{}
	var targets []string
	var first composeService
	for i, name := range workers {
		w := c.Services[name]
		if i == 0 {
			first = w
		}
		if w.Build == nil {
			t.Fatalf("%s: no build", name)
		}
		if got := filepath.Clean(filepath.Join(base, w.Build.Context)); got != repoRoot(t) {
			t.Errorf("%s build context %s, want the repository root", name, got)
		}
		if _, err := os.Stat(filepath.Join(repoRoot(t), w.Build.Dockerfile)); err != nil || w.Build.Dockerfile != "deploy/docker/Dockerfile" {
			t.Errorf("%s dockerfile %q: want deploy/docker/Dockerfile (%v)", name, w.Build.Dockerfile, err)
		}
		// The replicas differ in their id and host port only.
		if i > 0 {
			a, b := first, w
			a.Command, b.Command, a.Ports, b.Ports = nil, nil, nil, nil
			if !reflect.DeepEqual(a, b) {
				t.Errorf("%s differs from %s in more than its replica id and host port", name, workers[0])
			}
		}
		checkFlags(t, "compose "+name+" command", w.Command)
		id, ok := flagValue(w.Command, "db.replica-id")
		if !ok || id == "" {
			t.Errorf("%s: no --db.replica-id", name)
		} else if other, dup := ids[id]; dup {
			t.Errorf("%s and %s share the replica id %q: the server could not tell them apart", name, other, id)
		}
		ids[id] = name

		raw, ok := flagValue(w.Command, "db.url")
		if !ok {
			t.Fatalf("%s: no --db.url", name)
		}
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatalf("%s --db.url: %v", name, err)
		}
		if _, has := u.User.Password(); has {
			t.Errorf("%s --db.url has a password: every user of the host can read it in the process list", name)
		}
		if u.Hostname() != "postgres" || u.Port() != "5432" || u.User.Username() != pg.Environment["POSTGRES_USER"] || strings.TrimPrefix(u.Path, "/") != pg.Environment["POSTGRES_DB"] {
			t.Errorf("%s --db.url %s: want user %s, database %s on postgres:5432", name, raw, pg.Environment["POSTGRES_USER"], pg.Environment["POSTGRES_DB"])
		}
		pwFile, ok := flagValue(w.Command, "db.password-file")
		if !ok {
			t.Fatalf("%s: no --db.password-file", name)
		}
		if s := secretOf(t, name, w, pwFile); s != pgSecret {
			t.Errorf("%s reads the secret %q, PostgreSQL %q: want the same", name, s, pgSecret)
		}

		listen, ok := flagValue(w.Command, "web.listen-address")
		if !ok {
			t.Fatalf("%s: no --web.listen-address", name)
		}
		port := portOf(t, listen)
		if len(w.Ports) != 1 || !strings.HasSuffix(w.Ports[0], ":"+port) || !strings.HasPrefix(w.Ports[0], "127.0.0.1:") {
			t.Errorf("%s ports %v, want 127.0.0.1:...:%s", name, w.Ports, port)
		} else if other, dup := hostPorts[w.Ports[0]]; dup {
			t.Errorf("%s and %s publish the same host port %s", name, other, w.Ports[0])
		}
		hostPorts[w.Ports[0]] = name
		targets = append(targets, name+":"+port)

		grace, err := time.ParseDuration(w.StopGracePeriod)
		if err != nil || grace < 40*time.Second {
			t.Errorf("%s stop_grace_period %q: want more than shutdown_grace (30s) plus a margin", name, w.StopGracePeriod)
		}
		if !w.ReadOnly || !reflect.DeepEqual(w.CapDrop, []string{"ALL"}) {
			t.Errorf("%s: read_only %v, cap_drop %v: want a read-only root and no capabilities", name, w.ReadOnly, w.CapDrop)
		}

		// The config is mounted, has no database.path, and checks with the
		// URL; there is no SQLite volume.
		cfgPath, _ := flagValue(w.Command, "config.file")
		var src string
		for _, v := range w.Volumes {
			parts := strings.Split(v, ":")
			if parts[1] == cfgPath {
				src = parts[0]
			}
			if parts[1] == "/var/lib/worker" {
				t.Errorf("%s mounts a volume at /var/lib/worker: PostgreSQL mode keeps no SQLite file", name)
			}
		}
		if src == "" {
			t.Fatalf("%s --config.file=%s is not mounted", name, cfgPath)
		}
		doc, err := os.ReadFile(filepath.Join(base, src))
		if err != nil {
			t.Fatal(err)
		}
		if p := dbDir(t, doc); p != "." {
			t.Errorf("%s config %s sets database.path: refused beside --db.url", name, src)
		}
		if i == 0 {
			checkConfigWith(t, "compose "+name+" config "+src, doc, "--db.url="+raw, "--db.replica-id="+id)
		}
	}

	// Prometheus scrapes each replica as a target of its own, with the rules.
	var pc struct {
		RuleFiles     []string `yaml:"rule_files"`
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	prom := c.Services["prometheus"]
	pm := mountsOf(prom)
	if pm["/etc/prometheus/alerts.yml"] != "../prometheus/alerts.yml" {
		t.Errorf("prometheus volumes %v: want ../prometheus/alerts.yml at /etc/prometheus/alerts.yml", prom.Volumes)
	}
	promCfg, ok := pm["/etc/prometheus/prometheus.yml"]
	if !ok {
		t.Fatalf("prometheus: no config mounted at /etc/prometheus/prometheus.yml")
	}
	if err := yaml.Unmarshal(readFile(t, "deploy", "docker", path.Clean(promCfg)), &pc); err != nil {
		t.Fatal(err)
	}
	var scraped []string
	for _, sc := range pc.ScrapeConfigs {
		if sc.JobName == "worker" {
			for _, s := range sc.StaticConfigs {
				scraped = append(scraped, s.Targets...)
			}
		}
	}
	sort.Strings(scraped)
	if !reflect.DeepEqual(scraped, targets) {
		t.Errorf("%s job worker scrapes %v, want every replica %v", promCfg, scraped, targets)
	}
	if got, want := strings.Join(pc.RuleFiles, ","), "alerts.yml"; got != want {
		t.Errorf("%s rule_files %q, want %q", promCfg, got, want)
	}
	gm := mountsOf(c.Services["grafana"])
	if gm["/etc/grafana/provisioning"] != "../../grafana/provisioning" || gm["/etc/grafana/dashboards"] != "../../grafana/dashboards" {
		t.Errorf("grafana volumes %v: want grafana/provisioning and grafana/dashboards", c.Services["grafana"].Volumes)
	}

	// Bind mounts exist; named volumes are declared.
	for name, svc := range c.Services {
		for _, v := range svc.Volumes {
			src := strings.Split(v, ":")[0]
			if strings.HasPrefix(src, ".") {
				if _, err := os.Stat(filepath.Join(base, src)); err != nil {
					t.Errorf("service %s mounts %s: %v", name, src, err)
				}
			} else if _, ok := c.Volumes[src]; !ok {
				t.Errorf("service %s mounts volume %s: not declared", name, src)
			}
		}
	}
	t.Logf("%d replicas %v, ids %v", len(workers), workers, keysOf(ids))
}

// secretOf returns the name of the secret that a service reads at p, which
// must be /run/secrets/<name> and listed in the service's secrets.
func secretOf(t testing.TB, service string, s composeService, p string) string {
	t.Helper()
	name, ok := strings.CutPrefix(p, "/run/secrets/")
	if !ok {
		t.Errorf("%s: password file %q, want a secret under /run/secrets/", service, p)
		return ""
	}
	for _, s := range s.Secrets {
		if s == name {
			return name
		}
	}
	t.Errorf("%s reads /run/secrets/%s but does not list the secret %s", service, name, name)
	return name
}

// mountsOf maps the container paths of a service's volumes to their sources.
func mountsOf(s composeService) map[string]string {
	m := map[string]string{}
	for _, v := range s.Volumes {
		parts := strings.Split(v, ":")
		m[parts[1]] = parts[0]
	}
	return m
}

func keysOf(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// TestDocker_ComposeStrictDecoding proves that loadStrictCompose refuses a
// field the types do not know, and that both compose files decode with it.
func TestDocker_ComposeStrictDecoding(t *testing.T) {
	for _, name := range []string{"compose.yaml", "compose-postgres.yaml"} {
		loadStrictCompose(t, name)
	}
	raw := string(readFile(t, "deploy", "docker", "compose-postgres.yaml"))
	old := "    stop_grace_period: 45s\n"
	if !strings.Contains(raw, old) {
		t.Fatalf("compose-postgres.yaml has no %q", old)
	}
	var c strictCompose
	err := yaml.UnmarshalWithOptions([]byte(strings.Replace(raw, old, old+"    stop_grace_perod: 45s\n", 1)), &c, yaml.Strict())
	if err == nil || !strings.Contains(err.Error(), `unknown field "stop_grace_perod"`) {
		t.Errorf("got %v, want an error naming the unknown field stop_grace_perod", err)
	}
}
