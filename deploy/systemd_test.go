package deploy_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

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
	// The env file sets only variables the unit reads.
	env := string(readFile(t, "deploy", "systemd", "worker.env"))
	for _, line := range strings.Split(env, "\n") {
		line = strings.TrimPrefix(strings.TrimSpace(line), "#")
		k, v, ok := strings.Cut(line, "=")
		if !ok || strings.Contains(k, " ") {
			continue
		}
		if !strings.Contains(strings.Join(d["Service.Environment"], " "), k+"=") {
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
	unit := strings.ReplaceAll(string(readFile(t, "deploy", "systemd", "worker.service")), "/usr/local/bin/worker", bin)
	p := filepath.Join(t.TempDir(), "worker.service")
	if err := os.WriteFile(p, []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := run(t, "", nil, sa, "verify", p)
	if err != nil || strings.TrimSpace(out) != "" {
		t.Errorf("systemd-analyze verify: %v, want no error and no output; got:\n%s", err, out)
	}
	// Exposure 0.0 (locked down) to 10.0 (unsafe); fail above 2.0.
	out, err = run(t, "", nil, sa, "security", "--offline=true", "--threshold=20", "--no-pager", p)
	if err != nil {
		t.Errorf("systemd-analyze security --threshold=20: %v\n%s", err, out)
	}
	if m := regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+)`).FindStringSubmatch(out); m != nil {
		t.Logf("systemd-analyze security: exposure %s", m[1])
	} else {
		t.Errorf("systemd-analyze security: no exposure level in:\n%s", out)
	}
}
