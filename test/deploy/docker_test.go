package deploy_test

import (
	"debug/elf"
	"net"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-yaml"

	"github.com/sqlworker/worker/internal/workertest"
)

// dockerfile is a parsed Dockerfile: instructions with continuation lines
// joined.
type dockerfile []struct{ op, args string }

func parseDockerfile(t testing.TB) dockerfile {
	t.Helper()
	var out dockerfile
	var cur strings.Builder
	flush := func() {
		s := strings.TrimSpace(cur.String())
		cur.Reset()
		if s == "" {
			return
		}
		op, args, _ := strings.Cut(s, " ")
		out = append(out, struct{ op, args string }{strings.ToUpper(op), strings.TrimSpace(args)})
	}
	for _, line := range strings.Split(string(readFile(t, "deploy", "docker", "Dockerfile")), "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") {
			continue
		}
		if s, ok := strings.CutSuffix(trimmed, "\\"); ok {
			cur.WriteString(s + " ")
			continue
		}
		cur.WriteString(trimmed)
		flush()
	}
	flush()
	return out
}

func (d dockerfile) all(op string) []string {
	var out []string
	for _, in := range d {
		if in.op == op {
			out = append(out, in.args)
		}
	}
	return out
}

// execForm parses a JSON-array instruction argument.
func execForm(t testing.TB, s string) []string {
	t.Helper()
	var out []string
	if err := yaml.Unmarshal([]byte(s), &out); err != nil {
		t.Fatalf("not an exec-form array: %s: %v", s, err)
	}
	return out
}

func flagValue(args []string, name string) (string, bool) {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v, true
		}
	}
	return "", false
}

func portOf(t testing.TB, hostport string) string {
	t.Helper()
	_, p, err := net.SplitHostPort(hostport)
	if err != nil {
		t.Fatalf("%q: %v", hostport, err)
	}
	return p
}

// dbDir returns the directory of database.path in a worker config.
func dbDir(t testing.TB, doc []byte) string {
	t.Helper()
	var c struct {
		Database struct {
			Path string `yaml:"path"`
		} `yaml:"database"`
	}
	if err := yaml.Unmarshal(doc, &c); err != nil {
		t.Fatal(err)
	}
	return path.Dir(c.Database.Path)
}

var buildTagsRE = regexp.MustCompile(`-tags\s+(\S+)`)

// TestDocker_Dockerfile checks that every path, flag, port and tag the
// Dockerfile names matches the repository and the worker.
func TestDocker_Dockerfile(t *testing.T) {
	d := parseDockerfile(t)
	root := repoRoot(t)

	froms := d.all("FROM")
	if len(froms) < 2 {
		t.Fatalf("FROM %v: want a multi-stage build", froms)
	}
	if final := froms[len(froms)-1]; !strings.Contains(final, "distroless/static") {
		t.Errorf("final stage FROM %s: want a minimal static image", final)
	}
	if users := d.all("USER"); len(users) == 0 || strings.HasPrefix(users[len(users)-1], "0") || strings.HasPrefix(users[len(users)-1], "root") {
		t.Errorf("USER %v: want a non-root user", users)
	}

	// COPY sources from the build context exist; destinations are recorded.
	copied := map[string]bool{}
	for _, c := range d.all("COPY") {
		f := strings.Fields(c)
		var args []string
		fromStage := false
		for _, a := range f {
			if strings.HasPrefix(a, "--from=") {
				fromStage = true
			}
			if !strings.HasPrefix(a, "--") {
				args = append(args, a)
			}
		}
		dst := args[len(args)-1]
		copied[dst] = true
		if fromStage {
			continue
		}
		for _, src := range args[:len(args)-1] {
			if _, err := os.Stat(filepath.Join(root, src)); err != nil {
				t.Errorf("COPY %s: %v", src, err)
			}
		}
	}

	runs := strings.Join(d.all("RUN"), "\n")
	tags := buildTagsRE.FindStringSubmatch(runs)
	if tags == nil {
		t.Fatal("no go build -tags in a RUN")
	}
	for _, want := range []string{"sqlite_omit_load_extension", "osusergo", "netgo"} {
		if !strings.Contains(","+tags[1]+",", ","+want+",") {
			t.Errorf("build tags %q: want %s", tags[1], want)
		}
	}
	for _, want := range []string{"CGO_ENABLED=1", "-extldflags=-static", "./cmd/worker", "./deploy/docker/healthcheck"} {
		if !strings.Contains(runs, want) {
			t.Errorf("RUN: want %q", want)
		}
	}
	for _, pkg := range regexp.MustCompile(`\s(\./[a-z/]+)`).FindAllStringSubmatch(runs, -1) {
		if fi, err := os.Stat(filepath.Join(root, pkg[1])); err != nil || !fi.IsDir() {
			t.Errorf("RUN builds %s: no such package directory", pkg[1])
		}
	}
	for _, m := range regexp.MustCompile(`--config\.file=(\S+)`).FindAllStringSubmatch(runs, -1) {
		if _, err := os.Stat(filepath.Join(root, m[1])); err != nil {
			t.Errorf("RUN checks config %s: %v", m[1], err)
		}
	}

	entry := d.all("ENTRYPOINT")
	cmd := d.all("CMD")
	if len(entry) != 1 || len(cmd) != 1 {
		t.Fatalf("ENTRYPOINT %v, CMD %v: want one each", entry, cmd)
	}
	if ep := execForm(t, entry[0]); len(ep) != 1 || !copied[ep[0]] {
		t.Errorf("ENTRYPOINT %v: want the COPY'd worker binary", ep)
	}
	args := execForm(t, cmd[0])
	checkFlags(t, "Dockerfile CMD", args)
	cfg, _ := flagValue(args, "config.file")
	if !copied[cfg] {
		t.Errorf("CMD --config.file=%s: not a COPY destination", cfg)
	}
	listen, ok := flagValue(args, "web.listen-address")
	if !ok {
		t.Fatal("CMD: no --web.listen-address (the default listens on 127.0.0.1 only)")
	}
	port := portOf(t, listen)
	if expose := d.all("EXPOSE"); len(expose) != 1 || expose[0] != port {
		t.Errorf("EXPOSE %v, want %s (the listen port)", expose, port)
	}

	hc := d.all("HEALTHCHECK")
	if len(hc) != 1 {
		t.Fatalf("HEALTHCHECK %v: want one", hc)
	}
	_, hcCmd, ok := strings.Cut(hc[0], "CMD ")
	if !ok {
		t.Fatalf("HEALTHCHECK %s: no CMD", hc[0])
	}
	hcArgs := execForm(t, hcCmd)
	if !copied[hcArgs[0]] {
		t.Errorf("HEALTHCHECK runs %s: not a COPY destination", hcArgs[0])
	}
	u, err := url.Parse(hcArgs[1])
	if err != nil || u.Port() != port || u.Path != "/readyz" {
		t.Errorf("HEALTHCHECK URL %s: want /readyz on port %s", hcArgs[1], port)
	}

	vol := d.all("VOLUME")
	if len(vol) != 1 {
		t.Fatalf("VOLUME %v: want one", vol)
	}
	if got, want := execForm(t, vol[0]), dbDir(t, readFile(t, "deploy", "docker", "worker.yml")); len(got) != 1 || got[0] != want {
		t.Errorf("VOLUME %v, want the database directory %s", got, want)
	}
	checkConfig(t, "deploy/docker/worker.yml", readFile(t, "deploy", "docker", "worker.yml"))
}

type composeFile struct {
	Services map[string]struct {
		Build struct {
			Context    string `yaml:"context"`
			Dockerfile string `yaml:"dockerfile"`
		} `yaml:"build"`
		Image           string   `yaml:"image"`
		Command         []string `yaml:"command"`
		Volumes         []string `yaml:"volumes"`
		Ports           []string `yaml:"ports"`
		StopGracePeriod string   `yaml:"stop_grace_period"`
	} `yaml:"services"`
	Volumes map[string]any `yaml:"volumes"`
}

// TestDocker_Compose checks every path, port and flag of compose.yaml.
func TestDocker_Compose(t *testing.T) {
	var c composeFile
	if err := yaml.Unmarshal(readFile(t, "deploy", "docker", "compose.yaml"), &c); err != nil {
		t.Fatal(err)
	}
	base := repoPath(t, "deploy", "docker")
	for _, name := range []string{"worker", "prometheus", "grafana"} {
		if _, ok := c.Services[name]; !ok {
			t.Fatalf("compose.yaml: no service %s", name)
		}
	}
	w := c.Services["worker"]
	ctx := filepath.Join(base, w.Build.Context)
	if got, want := filepath.Clean(ctx), repoRoot(t); got != want {
		t.Errorf("worker build context %s, want the repository root", got)
	}
	if _, err := os.Stat(filepath.Join(ctx, w.Build.Dockerfile)); err != nil {
		t.Errorf("worker dockerfile: %v", err)
	}
	checkFlags(t, "compose worker command", w.Command)
	listen, ok := flagValue(w.Command, "web.listen-address")
	if !ok {
		t.Fatal("compose worker: no --web.listen-address")
	}
	port := portOf(t, listen)
	if len(w.Ports) != 1 || !strings.HasSuffix(w.Ports[0], ":"+port) || !strings.HasPrefix(w.Ports[0], "127.0.0.1:") {
		t.Errorf("worker ports %v, want 127.0.0.1:...:%s", w.Ports, port)
	}
	grace, err := time.ParseDuration(w.StopGracePeriod)
	if err != nil || grace < 40*time.Second {
		t.Errorf("worker stop_grace_period %q: want more than shutdown_grace (30s) plus a margin", w.StopGracePeriod)
	}

	// Bind mounts exist; named volumes are declared; the worker's data
	// volume is the database directory.
	cfgPath, _ := flagValue(w.Command, "config.file")
	mounted := map[string]string{} // container path -> source
	for name, svc := range c.Services {
		for _, v := range svc.Volumes {
			parts := strings.Split(v, ":")
			src, dst := parts[0], parts[1]
			if name == "worker" {
				mounted[dst] = src
			}
			if strings.HasPrefix(src, ".") {
				if _, err := os.Stat(filepath.Join(base, src)); err != nil {
					t.Errorf("service %s mounts %s: %v", name, src, err)
				}
			} else if _, ok := c.Volumes[src]; !ok {
				t.Errorf("service %s mounts volume %s: not declared", name, src)
			}
		}
	}
	src, ok := mounted[cfgPath]
	if !ok {
		t.Fatalf("worker --config.file=%s is not mounted", cfgPath)
	}
	doc, err := os.ReadFile(filepath.Join(base, src))
	if err != nil {
		t.Fatal(err)
	}
	checkConfig(t, "compose worker config "+src, doc)
	if _, ok := mounted[dbDir(t, doc)]; !ok {
		t.Errorf("the database directory %s is not a volume of the worker", dbDir(t, doc))
	}

	// Prometheus scrapes the worker service on its port, with the rules
	// mounted beside its config.
	var pc struct {
		RuleFiles     []string `yaml:"rule_files"`
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	if err := yaml.Unmarshal(readFile(t, "deploy", "docker", "prometheus.yml"), &pc); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, sc := range pc.ScrapeConfigs {
		if sc.JobName == "worker" {
			found = len(sc.StaticConfigs) == 1 && len(sc.StaticConfigs[0].Targets) == 1 && sc.StaticConfigs[0].Targets[0] == "worker:"+port
		}
	}
	if !found {
		t.Errorf("deploy/docker/prometheus.yml: want a job \"worker\" scraping worker:%s", port)
	}
	pm := map[string]string{}
	for _, v := range c.Services["prometheus"].Volumes {
		parts := strings.Split(v, ":")
		pm[parts[1]] = parts[0]
	}
	if pm["/etc/prometheus/prometheus.yml"] != "./prometheus.yml" || pm["/etc/prometheus/alerts.yml"] != "../prometheus/alerts.yml" {
		t.Errorf("prometheus volumes %v: want ./prometheus.yml and ../prometheus/alerts.yml in /etc/prometheus", c.Services["prometheus"].Volumes)
	}
	if got, want := strings.Join(pc.RuleFiles, ","), "alerts.yml"; got != want {
		t.Errorf("deploy/docker/prometheus.yml rule_files %q, want %q", got, want)
	}
	gm := map[string]string{}
	for _, v := range c.Services["grafana"].Volumes {
		parts := strings.Split(v, ":")
		gm[parts[1]] = parts[0]
	}
	if gm["/etc/grafana/provisioning"] != "../../grafana/provisioning" {
		t.Errorf("grafana volumes %v: want grafana/provisioning at /etc/grafana/provisioning", c.Services["grafana"].Volumes)
	}
}

var ldflagsRE = regexp.MustCompile(`-ldflags\s+"([^"]+)"`)

// TestDocker_StaticBuild runs the Dockerfile's worker build here, with the
// Dockerfile's CGO_ENABLED=1, tags and ldflags, and checks that the result is a static
// executable that runs.
func TestDocker_StaticBuild(t *testing.T) {
	t.Parallel()
	runs := parseDockerfile(t).all("RUN")
	var build string
	for _, r := range runs {
		if strings.Contains(r, "./cmd/worker") {
			build = r
		}
	}
	tags := buildTagsRE.FindStringSubmatch(build)
	ld := ldflagsRE.FindStringSubmatch(build)
	if tags == nil || ld == nil {
		t.Fatalf("Dockerfile: no -tags or -ldflags in the worker build: %s", build)
	}
	ldflags := strings.NewReplacer("${VERSION}", "test", "${REVISION}", "test").Replace(ld[1])
	bin := filepath.Join(t.TempDir(), "worker-static")
	// Without -trimpath, which would rebuild the standard library as well;
	// it does not change how the binary links.
	out, err := workertest.GoBuild(repoRoot(t), []string{"CGO_ENABLED=1"}, "build", "-tags", tags[1], "-ldflags", ldflags, "-o", bin, "./cmd/worker")
	if err != nil {
		t.Fatalf("go build -tags %s -ldflags %q: %v\n%s", tags[1], ldflags, err, out)
	}
	if strings.Contains(out, "warning") {
		t.Errorf("static build warned (getaddrinfo/getpwnam/dlopen in a static binary?):\n%s", out)
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s has a PT_INTERP program header: dynamically linked", bin)
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) != 0 {
		t.Errorf("%s needs shared libraries %v, want none", bin, libs)
	}
	out, err = run(t, repoRoot(t), nil, bin, "--config.check", "--config.file=deploy/docker/worker.yml")
	if err != nil {
		t.Errorf("static worker --config.check: %v\n%s", err, out)
	}
}
