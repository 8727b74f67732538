package main

import (
	"bytes"
	"net"
	"net/http"
	"net/http/httptest"
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
