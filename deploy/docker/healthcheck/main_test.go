package main

import (
	"bytes"
	"encoding/pem"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestRun_StatusCodes(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/readyz":
			w.WriteHeader(http.StatusOK)
		case "/starting":
			w.WriteHeader(http.StatusServiceUnavailable)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)

	for _, tc := range []struct {
		path string
		want int
	}{
		{"/readyz", 0},
		{"/starting", 1},
		{"/missing", 1},
	} {
		var stderr bytes.Buffer
		if got := run([]string{srv.URL + tc.path}, &stderr, 5*time.Second); got != tc.want {
			t.Errorf("run(%s) = %d, want %d (stderr %q)", tc.path, got, tc.want, stderr.String())
		}
		if tc.want != 0 && !strings.Contains(stderr.String(), tc.path) {
			t.Errorf("run(%s) stderr = %q, want it to name the URL", tc.path, stderr.String())
		}
	}
}

func TestRun_Unreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there any more

	var stderr bytes.Buffer
	if got, want := run([]string{"http://" + addr + "/readyz"}, &stderr, 2*time.Second), 1; got != want {
		t.Errorf("run(unreachable) = %d, want %d", got, want)
	}
}

func TestRun_Usage(t *testing.T) {
	var stderr bytes.Buffer
	if got, want := run([]string{"a", "b"}, &stderr, time.Second), 2; got != want {
		t.Errorf("run(a, b) = %d, want %d", got, want)
	}
}

func TestRun_DefaultURL(t *testing.T) {
	if got, want := DefaultURL, "http://127.0.0.1:9847/readyz"; got != want {
		t.Errorf("DefaultURL = %q, want %q", got, want)
	}
}

// Ensure the check works under a web config with TLS and basic auth: an
// untrusted certificate fails unless -ca trusts it or -insecure-skip-verify
// is given, and the URL's user and password are sent as basic auth.
func TestRun_TLSBasicAuth(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "probe" || p != "secret" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(srv.Close)
	ca := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	authURL := strings.Replace(srv.URL, "https://", "https://probe:secret@", 1) + "/readyz"
	for _, tc := range []struct {
		name string
		args []string
		want int
	}{
		{"Untrusted", []string{authURL}, 1},
		{"CA", []string{"-ca", ca, authURL}, 0},
		{"InsecureSkipVerify", []string{"-insecure-skip-verify", authURL}, 0},
		{"NoCredentials", []string{"-ca", ca, srv.URL + "/readyz"}, 1},
		{"BothFlags", []string{"-ca", ca, "-insecure-skip-verify", authURL}, 2},
		{"MissingCA", []string{"-ca", ca + ".nope", authURL}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			if got := run(tc.args, &stderr, 5*time.Second); got != tc.want {
				t.Errorf("run(%v): got %d, want %d (stderr %q)", tc.args, got, tc.want, stderr.String())
			}
			if strings.Contains(stderr.String(), "secret") {
				t.Errorf("stderr names the password: %q", stderr.String())
			}
		})
	}
}
