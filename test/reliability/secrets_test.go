package reliability_test

import (
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/sqlworker/worker/internal/pgtest"
	"github.com/sqlworker/worker/internal/workertest"
)

// Ensure no secret that pgx takes from a --db.url (the password, in the
// user info or as a parameter, and sslpassword, the passphrase of the TLS
// client key, even with its key percent-encoded) shows on any surface of the
// worker: --config.check's output, every log line (the server down at start,
// the retries, ready, closed), /readyz while the server is down, the landing
// page; and that each secret in argv gets its own warning. Before,
// sslpassword was shown in clear on all of them.
func TestSecrets_DBURLMasked(t *testing.T) {
	t.Parallel()
	const pw, sslpw, encoded = "Pw-S3cret-1", "Ssl-S3cret-2", "Ssl-S3cret-3"
	srv := pgtest.New(t) // not running yet: the worker starts against a server that is down
	// The server trusts local connections: the password is carried, not checked.
	url := strings.Replace(srv.URL(), "postgres@", "postgres:"+pw+"@", 1) + "&sslpassword=" + sslpw
	secrets := []string{pw, sslpw, encoded}
	clear := func(surface, s string) {
		t.Helper()
		for _, secret := range secrets {
			if strings.Contains(s, secret) {
				t.Errorf("%s shows the secret %q in clear:\n%s", surface, secret, s)
			}
		}
	}

	for _, u := range []string{url, srv.URL() + "&ssl%70assword=" + encoded} {
		out, err := exec.Command(workerBin, "--config.check", "--db.url", u, "--db.replica-id", "sec").CombinedOutput()
		if err != nil {
			t.Fatalf("--config.check: %v\n%s", err, out)
		}
		clear("--config.check", string(out))
		if !strings.Contains(string(out), "sslpassword=xxxxx") {
			t.Errorf("--config.check: want sslpassword=xxxxx in\n%s", out)
		}
	}

	addr := workertest.FreeAddr(t)
	p := workertest.StartProcess(t, "worker", nil, workerBin, "--db.url", url, "--db.replica-id", "sec",
		"--web.listen-address", addr, "--log.level", "debug")
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	waitLog := func(what string) {
		t.Helper()
		deadline := time.Now().Add(time.Minute)
		for !strings.Contains(p.Logs(), what) {
			if time.Now().After(deadline) || p.Exited() {
				t.Fatalf("no %q in the log within a minute:\n%s", what, p.Logs())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	// waitReadyz polls /readyz until it answers want with a body holding s.
	waitReadyz := func(want int, s string) string {
		t.Helper()
		deadline := time.Now().Add(time.Minute)
		for {
			code, body := get("/readyz")
			if code == want && strings.Contains(body, s) {
				return body
			}
			if time.Now().After(deadline) || p.Exited() {
				t.Fatalf("/readyz: got %d %q, want %d with %q within a minute", code, body, want, s)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitLog("Cannot open the database")
	body := waitReadyz(http.StatusServiceUnavailable, "database")
	clear("/readyz with the server down", body)
	if !strings.Contains(body, "sslpassword=xxxxx") || !strings.Contains(body, "postgres:xxxxx@") {
		t.Errorf("/readyz with the server down: want the URL masked in it, got %q", body)
	}

	srv.Start(t)
	waitReadyz(http.StatusOK, "")
	code, body := get("/")
	if code != http.StatusOK || !strings.Contains(body, "sslpassword=xxxxx") {
		t.Errorf("landing page: got %d, want 200 with the URL masked (sslpassword=xxxxx) in\n%s", code, body)
	}
	clear("the landing page", body)

	if code, _ := p.Stop(t, time.Minute); code != 0 {
		t.Errorf("exit code: got %d, want 0", code)
	}
	logs := p.Logs()
	clear("the log", logs)
	for _, param := range []string{"a password", "an sslpassword"} {
		if want := "The --db.url has " + param + ", which every user can read in the process list"; !strings.Contains(logs, want) {
			t.Errorf("the log: no warning %q", want)
		}
	}
	for _, line := range []string{"Cannot open the database", "Database opened", "Database closed"} {
		if !strings.Contains(logs, line) {
			t.Errorf("the log: no %q line: the surfaces that show the URL were not all seen", line)
		}
	}
}
