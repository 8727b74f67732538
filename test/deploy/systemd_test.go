package deploy_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sqlworker/worker/internal/pgtest"
	"github.com/sqlworker/worker/internal/workertest"
)

// unitDirectives parses a systemd unit into section.key -> values.
func unitDirectives(t testing.TB, text string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	section := ""
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "["):
			section = strings.Trim(line, "[]")
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Errorf("worker.service: not a directive: %q", line)
				continue
			}
			out[section+"."+k] = append(out[section+"."+k], v)
		}
	}
	return out
}

// TestSystemd_Hardening checks the directives issue 4 asks for.
func TestSystemd_Hardening(t *testing.T) {
	d := unitDirectives(t, string(readFile(t, "deploy", "systemd", "worker.service")))
	for key, want := range map[string]string{
		"DynamicUser":             "yes",
		"StateDirectory":          "worker",
		"ProtectSystem":           "strict",
		"NoNewPrivileges":         "yes",
		"PrivateTmp":              "yes",
		"PrivateDevices":          "yes",
		"ProtectHome":             "yes",
		"ProtectKernelTunables":   "yes",
		"ProtectKernelModules":    "yes",
		"ProtectKernelLogs":       "yes",
		"ProtectControlGroups":    "yes",
		"ProtectClock":            "yes",
		"ProtectHostname":         "yes",
		"RestrictNamespaces":      "yes",
		"RestrictRealtime":        "yes",
		"RestrictSUIDSGID":        "yes",
		"RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
		"Restart":                 "on-failure",
		"CapabilityBoundingSet":   "",
		"ExecReload":              "/bin/kill -HUP $MAINPID", // systemctl reload: the worker reloads on SIGHUP
	} {
		got, ok := d["Service."+key]
		if !ok || got[len(got)-1] != want {
			t.Errorf("[Service] %s = %q, want %q", key, got, want)
		}
	}
	if n, err := strconv.Atoi(strings.Join(d["Service.LimitNOFILE"], "")); err != nil || n < 1024 {
		t.Errorf("[Service] LimitNOFILE = %q, want an explicit number", d["Service.LimitNOFILE"])
	}

	// TimeoutStopSec must exceed the example config's shutdown_grace.
	stop, err := time.ParseDuration(strings.Join(d["Service.TimeoutStopSec"], ""))
	if err != nil {
		t.Fatalf("[Service] TimeoutStopSec: %v", err)
	}
	m := regexp.MustCompile(`(?m)^\s*shutdown_grace:\s*(\S+)`).FindSubmatch(readFile(t, "deploy", "systemd", "worker.yml"))
	if m == nil {
		t.Fatal("deploy/systemd/worker.yml: no scheduler.shutdown_grace")
	}
	grace, err := time.ParseDuration(string(m[1]))
	if err != nil {
		t.Fatal(err)
	}
	if stop < grace+10*time.Second {
		t.Errorf("TimeoutStopSec %v, want at least shutdown_grace %v + 10s", stop, grace)
	}

	// ExecStart and ExecStartPre use flags the worker has.
	for _, key := range []string{"Service.ExecStart", "Service.ExecStartPre"} {
		for _, line := range d[key] {
			checkFlags(t, "worker.service "+key, strings.Fields(line))
		}
	}
	// The env file sets only variables the unit, or its PostgreSQL drop-in,
	// reads.
	vars := strings.Join(append(d["Service.Environment"], unitDirectives(t, string(readFile(t, "deploy", "systemd", "worker.service.d", "postgres.conf")))["Service.Environment"]...), " ")
	env := string(readFile(t, "deploy", "systemd", "worker.env"))
	for _, line := range strings.Split(env, "\n") {
		line = strings.TrimPrefix(strings.TrimSpace(line), "#")
		k, v, ok := strings.Cut(line, "=")
		if !ok || strings.Contains(k, " ") {
			continue
		}
		if !strings.Contains(vars, k+"=") {
			t.Errorf("worker.env: %s is not a variable of the unit", k)
		}
		checkFlags(t, "worker.env "+k, strings.Fields(v))
	}
}

// TestSystemd_ConfigCheck validates the example config with the worker, and
// checks that its database lives in the unit's StateDirectory.
func TestSystemd_ConfigCheck(t *testing.T) {
	doc := readFile(t, "deploy", "systemd", "worker.yml")
	checkConfig(t, "deploy/systemd/worker.yml", doc)
	if !strings.Contains(string(doc), "path: /var/lib/worker/") {
		t.Errorf("deploy/systemd/worker.yml: database.path is not under /var/lib/worker (StateDirectory=worker)")
	}
}

// TestSystemd_Verify runs systemd-analyze verify (any message fails, since
// it exits 0 on unknown directives) and systemd-analyze security. The unit
// is verified as shipped except for ExecStart's binary, which points at the
// freshly built worker because verify requires it to exist.
func TestSystemd_Verify(t *testing.T) {
	sa := tool(t, "SYSTEMD_ANALYZE", "systemd-analyze")
	bin := workertest.BuildOnce(t, "")
	for _, dropIn := range []bool{false, true} {
		name := "worker.service"
		dir := t.TempDir()
		unit := strings.ReplaceAll(string(readFile(t, "deploy", "systemd", "worker.service")), "/usr/local/bin/worker", bin)
		p := filepath.Join(dir, "worker.service")
		if err := os.WriteFile(p, []byte(unit), 0o644); err != nil {
			t.Fatal(err)
		}
		if dropIn {
			// verify reads the drop-ins beside the unit it is given.
			name += " with worker.service.d/postgres.conf"
			conf := strings.ReplaceAll(string(readFile(t, "deploy", "systemd", "worker.service.d", "postgres.conf")), "/usr/local/bin/worker", bin)
			if err := os.Mkdir(filepath.Join(dir, "worker.service.d"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "worker.service.d", "postgres.conf"), []byte(conf), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		out, err := run(t, "", nil, sa, "verify", p)
		if err != nil || strings.TrimSpace(out) != "" {
			t.Errorf("systemd-analyze verify %s: %v, want no error and no output; got:\n%s", name, err, out)
		}
		// Exposure 0.0 (locked down) to 10.0 (unsafe); fail above 2.0.
		out, err = run(t, "", nil, sa, "security", "--offline=true", "--threshold=20", "--no-pager", p)
		if err != nil {
			t.Errorf("systemd-analyze security --threshold=20 %s: %v\n%s", name, err, out)
		}
		if m := regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+)`).FindStringSubmatch(out); m != nil {
			t.Logf("systemd-analyze security %s: exposure %s", name, m[1])
		} else {
			t.Errorf("systemd-analyze security %s: no exposure level in:\n%s", name, out)
		}
	}
}

// TestSystemd_PostgresDropIn checks worker.service.d/postgres.conf: it
// replaces ExecStartPre and ExecStart (an empty value first, as systemd
// needs), takes the URL from WORKER_DB_URL and the password from the
// credential it loads, and keeps the unit's hardening. Then it runs the
// drop-in's ExecStart as systemd would expand it (the variables from the
// unit and worker.env, %d a directory holding the credential) on a real
// PostgreSQL until the worker is ready, and checks that the drop-in's
// default WORKER_DB_URL, when worker.env does not set one, is refused
// naming --db.url rather than run on SQLite.
func TestSystemd_PostgresDropIn(t *testing.T) {
	d := unitDirectives(t, string(readFile(t, "deploy", "systemd", "worker.service.d", "postgres.conf")))
	for key := range d {
		switch key {
		case "Service.Environment", "Service.LoadCredential", "Service.ExecStartPre", "Service.ExecStart":
		default:
			t.Errorf("postgres.conf sets %s: want only Environment, LoadCredential, ExecStartPre and ExecStart, so that worker.service's hardening holds", key)
		}
	}
	env := map[string]string{}
	for _, src := range [][]string{
		unitDirectives(t, string(readFile(t, "deploy", "systemd", "worker.service")))["Service.Environment"],
		d["Service.Environment"],
	} {
		for _, e := range src {
			k, v, _ := strings.Cut(e, "=")
			env[k] = v
		}
	}
	cred, credSrc, ok := strings.Cut(strings.Join(d["Service.LoadCredential"], ""), ":")
	if !ok || !strings.HasPrefix(credSrc, "/etc/worker/") {
		t.Fatalf("LoadCredential=%v: want one name:/etc/worker/... credential", d["Service.LoadCredential"])
	}
	for _, key := range []string{"Service.ExecStartPre", "Service.ExecStart"} {
		v := d[key]
		if len(v) != 2 || v[0] != "" {
			t.Fatalf("%s = %q: want an empty value that resets the unit's, then one command", key, v)
		}
		args := strings.Fields(v[1])
		checkFlags(t, "postgres.conf "+key, args)
		if u, _ := flagValue(args, "db.url"); u != "${WORKER_DB_URL}" {
			t.Errorf("%s --db.url=%s, want ${WORKER_DB_URL}", key, u)
		}
		if p, _ := flagValue(args, "db.password-file"); p != "%d/"+cred {
			t.Errorf("%s --db.password-file=%s, want %%d/%s (the credential)", key, p, cred)
		}
	}
	if !strings.Contains(string(readFile(t, "deploy", "systemd", "worker.env")), "#WORKER_DB_URL=postgres://") {
		t.Error("worker.env: no WORKER_DB_URL=postgres://... example")
	}

	// The ExecStart, expanded, on a real server.
	srv := pgtest.New(t)
	srv.Start(t)
	credDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(credDir, cred), []byte("unused-by-trust-auth\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(t.TempDir(), "worker-postgres.yml")
	doc := readFile(t, "deploy", "systemd", "worker-postgres.yml")
	if err := os.WriteFile(cfg, doc, 0o600); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(doc), "path:") {
		t.Error("worker-postgres.yml sets database.path: refused beside --db.url")
	}
	if env["WORKER_CONFIG"] != "/etc/worker/worker-postgres.yml" {
		t.Errorf("postgres.conf WORKER_CONFIG=%s, want /etc/worker/worker-postgres.yml (deploy/systemd/worker-postgres.yml)", env["WORKER_CONFIG"])
	}
	expand := func(line string, vars map[string]string) []string {
		r := []string{"%d", credDir}
		for k, v := range vars {
			r = append(r, "${"+k+"}", v, "$"+k, v)
		}
		return strings.Fields(strings.NewReplacer(r...).Replace(line))
	}
	bin := workertest.BuildOnce(t, "")
	vars := map[string]string{"WORKER_CONFIG": cfg, "WORKER_DB_URL": srv.URL(), "WORKER_LISTEN_ADDRESS": "127.0.0.1:0", "WORKER_OPTS": "--log.format=logfmt"}
	pre := expand(d["Service.ExecStartPre"][1], vars)
	if out, err := run(t, "", nil, bin, pre[1:]...); err != nil {
		t.Fatalf("ExecStartPre %v: %v\n%s", pre, err, out)
	}
	argv := expand(d["Service.ExecStart"][1], vars)
	argv[0] = bin
	p := workertest.StartProcess(t, "worker", nil, argv...)
	eventually(t, 30*time.Second, 50*time.Millisecond, "ExecStart's worker ready on PostgreSQL", func() error {
		if p.Exited() {
			t.Fatalf("the worker exited: %v\n%s", p.Err(), p.Logs())
		}
		if !strings.Contains(p.Logs(), `msg="Worker ready"`) {
			return errors.New("not ready yet")
		}
		return nil
	})
	if !strings.Contains(p.Logs(), `msg="Database opened" database="postgres://`) {
		t.Errorf("the worker did not open the PostgreSQL database:\n%s", p.Logs())
	}
	if code, _ := p.Stop(t, 30*time.Second); code != 0 {
		t.Errorf("the worker exited %d after SIGTERM, want 0\n%s", code, p.Logs())
	}

	// Without WORKER_DB_URL in worker.env: the drop-in's default.
	vars["WORKER_DB_URL"] = env["WORKER_DB_URL"]
	pre = expand(d["Service.ExecStartPre"][1], vars)
	out, err := run(t, "", nil, bin, pre[1:]...)
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 2 || !strings.Contains(out, "--db.url") {
		t.Errorf("ExecStartPre with the default WORKER_DB_URL %q: %v, %q; want exit 2 naming --db.url", env["WORKER_DB_URL"], err, out)
	}
}
