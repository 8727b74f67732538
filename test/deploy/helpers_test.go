// Package deploy_test proves what ships in deploy/ and grafana/ against the
// real thing. promtool checks and unit-tests the alert rules and lints a
// real scrape of the worker; a real Prometheus scrapes a real worker (and a
// leak-injected one) and runs every dashboard query and rule expression; the
// systemd unit goes through systemd-analyze; the Dockerfile, compose file
// and Kubernetes manifests are checked against the repository and the
// worker's flags, and the Dockerfile's static build is run. The tools come
// from `make deploy-tools` (test/deploy.mk); a missing tool fails the tests,
// it never skips them.
package deploy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-yaml"

	"github.com/sqlworker/worker/internal/workertest"
)

// TestMain builds the worker binaries the selected tests ask for
// (workertest.BuildOnce) and checks for leaked goroutines.
func TestMain(m *testing.M) { workertest.RunMain(m) }

// repoRoot is the repository root: this package lives in test/deploy/.
func repoRoot(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot locate the test source")
	}
	return filepath.Dir(filepath.Dir(filepath.Dir(file)))
}

// repoPath joins path elements under the repository root.
func repoPath(t testing.TB, elem ...string) string {
	t.Helper()
	return filepath.Join(append([]string{repoRoot(t)}, elem...)...)
}

func readFile(t testing.TB, elem ...string) []byte {
	t.Helper()
	b, err := os.ReadFile(repoPath(t, elem...))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// tool finds an executable: the environment variable env if set, then
// bin/ of the repository (deploy-tools' go install route), then PATH. A
// missing tool fails the test: CI must never skip these.
func tool(t testing.TB, env string, names ...string) string {
	t.Helper()
	if p := os.Getenv(env); p != "" {
		return p
	}
	for _, n := range names {
		if p := repoPath(t, "bin", n); isExecutable(p) {
			return p
		}
	}
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	t.Fatalf("%s not found in bin/ or on PATH (or $%s): run `make deploy-tools`", strings.Join(names, " or "), env)
	return ""
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

func promtool(t testing.TB) string   { return tool(t, "PROMTOOL", "promtool") }
func prometheus(t testing.TB) string { return tool(t, "PROMETHEUS", "prometheus") }

// run runs a command with a deadline and returns its combined output.
func run(t testing.TB, dir string, stdin []byte, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// httpClient keeps no idle connections, so no goroutine outlives a test.
var httpClient = &http.Client{
	Timeout:   10 * time.Second,
	Transport: &http.Transport{DisableKeepAlives: true},
}

func httpGet(u string) (int, []byte, error) {
	resp, err := httpClient.Get(u)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// eventually polls cond every interval until it returns nil or the deadline
// passes, and then fails with the last error.
func eventually(t testing.TB, timeout, interval time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for {
		if err = cond(); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached within %v: %v", what, timeout, err)
		}
		time.Sleep(interval)
	}
}

// promAPI is a client of Prometheus's HTTP API.
type promAPI struct{ base string }

type apiResponse struct {
	Status    string          `json:"status"`
	Data      json.RawMessage `json:"data"`
	ErrorType string          `json:"errorType"`
	Error     string          `json:"error"`
	Warnings  []string        `json:"warnings"`
}

func (p promAPI) get(path string, q url.Values) (json.RawMessage, error) {
	u := p.base + path
	if q != nil {
		u += "?" + q.Encode()
	}
	code, body, err := httpGet(u)
	if err != nil {
		return nil, err
	}
	var r apiResponse
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("GET %s: status %d: %v: %.200s", path, code, err, body)
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("GET %s: %s: %s", path, r.ErrorType, r.Error)
	}
	return r.Data, nil
}

type sample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

// query runs an instant query and returns its vector (a scalar comes back
// as a one-sample vector).
func (p promAPI) query(expr string) ([]sample, error) {
	data, err := p.get("/api/v1/query", url.Values{"query": {expr}})
	if err != nil {
		return nil, err
	}
	var d struct {
		ResultType string          `json:"resultType"`
		Result     json.RawMessage `json:"result"`
	}
	if err := json.Unmarshal(data, &d); err != nil {
		return nil, err
	}
	switch d.ResultType {
	case "vector":
		var v []sample
		err := json.Unmarshal(d.Result, &v)
		return v, err
	case "scalar":
		var s [2]any
		if err := json.Unmarshal(d.Result, &s); err != nil {
			return nil, err
		}
		return []sample{{Value: s}}, nil
	default:
		return nil, fmt.Errorf("result type %q", d.ResultType)
	}
}

// ruleFile is the structure of a Prometheus rule file.
type ruleFile struct {
	Groups []ruleGroup `yaml:"groups"`
}

type ruleGroup struct {
	Name  string `yaml:"name"`
	Rules []rule `yaml:"rules"`
}

type rule struct {
	Record      string            `yaml:"record"`
	Alert       string            `yaml:"alert"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

func loadAlerts(t testing.TB) ruleFile {
	t.Helper()
	var f ruleFile
	if err := yaml.UnmarshalWithOptions(readFile(t, "deploy", "prometheus", "alerts.yml"), &f, yaml.Strict()); err != nil {
		t.Fatalf("alerts.yml: %v", err)
	}
	return f
}

func (f ruleFile) alerts() []rule {
	var out []rule
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			if r.Alert != "" {
				out = append(out, r)
			}
		}
	}
	return out
}

// flagRE matches a long flag of the worker: --name or --name=value.
var flagRE = regexp.MustCompile(`--([a-z][a-z0-9.-]*[a-z0-9])`)

// workerFlags returns the long flags the worker accepts, from --help-long.
func workerFlags(t testing.TB) map[string]bool {
	t.Helper()
	out, err := run(t, "", nil, workertest.BuildOnce(t, ""), "--help-long")
	if err != nil {
		t.Fatalf("worker --help-long: %v\n%s", err, out)
	}
	flags := map[string]bool{}
	for _, m := range flagRE.FindAllStringSubmatch(out, -1) {
		flags[m[1]] = true
	}
	for _, m := range regexp.MustCompile(`--\[no-\]([a-z][a-z0-9.-]*)`).FindAllStringSubmatch(out, -1) {
		flags[m[1]] = true
	}
	if !flags["config.file"] || !flags["web.listen-address"] {
		t.Fatalf("worker --help-long lists no --config.file or --web.listen-address:\n%s", out)
	}
	return flags
}

// checkFlags fails for every --flag in args that the worker does not have.
func checkFlags(t testing.TB, where string, args []string) {
	t.Helper()
	known := workerFlags(t)
	for _, a := range args {
		if !strings.HasPrefix(a, "--") {
			continue
		}
		m := flagRE.FindStringSubmatch(a)
		if m == nil || !known[m[1]] {
			t.Errorf("%s: flag %q: the worker has no such flag", where, a)
		}
	}
}

// checkConfig runs the worker's --config.check on a config document.
func checkConfig(t testing.TB, where string, doc []byte) {
	t.Helper()
	checkConfigWith(t, where, doc)
}

// checkConfigWith runs the worker's --config.check on a config document
// with more flags, such as the --db.url a deployment gives it.
func checkConfigWith(t testing.TB, where string, doc []byte, args ...string) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "worker.yml")
	if err := os.WriteFile(p, doc, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := run(t, "", nil, workertest.BuildOnce(t, ""), append([]string{"--config.check", "--config.file=" + p}, args...)...)
	if err != nil {
		t.Errorf("%s: worker --config.check: %v\n%s", where, err, out)
	}
}
