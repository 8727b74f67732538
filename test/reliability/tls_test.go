package reliability_test

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/sqlworker/worker/internal/workertest"
)

// mustWebConfig writes an exporter-toolkit web config that serves TLS with
// a new self-signed certificate and basic auth for user, and returns its
// path and a pool that trusts the certificate.
func mustWebConfig(t *testing.T, user, password string) (string, *x509.CertPool) {
	t.Helper()
	dir := t.TempDir()
	certFile, keyFile, pool := workertest.MustCert(t, dir)
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	webConfig := filepath.Join(dir, "web.yml")
	err = os.WriteFile(webConfig, []byte("tls_server_config:\n  cert_file: "+certFile+"\n  key_file: "+keyFile+
		"\nbasic_auth_users:\n  "+user+": "+string(hash)+"\n"), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	return webConfig, pool
}

// Ensure --web.config.file serves TLS with basic auth: a real TLS client
// gets 401 without credentials or with a wrong password, 200 with the right
// one; plain HTTP to the TLS port gets nothing served; a client that does
// not trust the certificate fails the handshake; and only the four paths
// exist.
func TestWeb_TLSBasicAuth(t *testing.T) {
	t.Parallel()
	const user, password = "prometheus", "correct horse battery staple"
	webConfig, pool := mustWebConfig(t, user, password)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
	}}
	t.Cleanup(client.CloseIdleConnections)
	w := StartWorker(t, workertest.Options{Args: []string{"--web.config.file", webConfig}, Client: client, Scheme: "https"})

	get := func(c *http.Client, url, user, password string) (int, string, error) {
		req, err := http.NewRequest(http.MethodGet, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		if user != "" {
			req.SetBasicAuth(user, password)
		}
		resp, err := c.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), nil
	}
	metrics := w.URL("/metrics")
	for _, tc := range []struct {
		name, user, password string
		want                 int
	}{
		{"NoCredentials", "", "", http.StatusUnauthorized},
		{"WrongPassword", user, "Tr0ub4dor&3", http.StatusUnauthorized},
		{"UnknownUser", "root", password, http.StatusUnauthorized},
		{"RightPassword", user, password, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body, err := get(client, metrics, tc.user, tc.password)
			if err != nil {
				t.Fatal(err)
			}
			if code != tc.want {
				t.Fatalf("GET /metrics: got %d, want %d", code, tc.want)
			}
			if served := strings.Contains(body, "worker_build_info"); served != (tc.want == http.StatusOK) {
				t.Fatalf("metrics in the body: got %t, want %t", served, tc.want == http.StatusOK)
			}
		})
	}
	t.Run("PlainHTTP", func(t *testing.T) {
		plain := &http.Client{Timeout: 10 * time.Second}
		code, body, err := get(plain, "http://"+w.Addr+"/metrics", user, password)
		if err == nil && (code != http.StatusBadRequest || strings.Contains(body, "worker_")) {
			t.Fatalf("plain HTTP to the TLS port: got %d %q, want the request refused (400 or a closed connection), nothing served", code, body)
		}
		t.Logf("plain HTTP to the TLS port: %d %q %v", code, strings.TrimSpace(body), err)
	})
	t.Run("UntrustedCertificate", func(t *testing.T) {
		untrusting := &http.Client{Timeout: 10 * time.Second}
		_, _, err := get(untrusting, metrics, user, password)
		var unknown x509.UnknownAuthorityError
		if !errors.As(err, &unknown) {
			t.Fatalf("TLS client without the CA: got %v, want x509.UnknownAuthorityError", err)
		}
	})
	t.Run("Paths", func(t *testing.T) {
		for path, want := range map[string]int{"/": 200, "/healthz": 200, "/readyz": 200, "/metrics": 200,
			"/debug/pprof/": 404, "/debug/vars": 404, "/nope": 404, "/metrics/../etc/passwd": 404} {
			code, _, err := get(client, w.URL(path), user, password)
			if err != nil || code != want {
				t.Errorf("GET %s with credentials: got %d (%v), want %d", path, code, err, want)
			}
			if code, _, _ := get(client, w.URL(path), "", ""); code != http.StatusUnauthorized {
				t.Errorf("GET %s without credentials: got %d, want 401", path, code)
			}
		}
	})
	if code, _ := w.Stop(t, 60*time.Second); code != 0 {
		t.Errorf("exit code: got %d, want 0", code)
	}
}
