package main_test

import (
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sqlworker/worker/internal/workertest"
)

// Ensure --web.listen-address accepts vsock://:PORT, as --help offers: the
// worker listens on vsock where the machine has it, and otherwise exits 1
// with one line naming the flag and the vsock error, never net.Listen's
// "too many colons in address". A vsock address without a port number is a
// usage error, exit 2.
func TestWorker_VsockListenAddress(t *testing.T) {
	p := workertest.StartProcess(t, "worker", nil, workerBin, "--web.listen-address", "vsock://:19847",
		"--db.path", filepath.Join(t.TempDir(), "worker.db"))
	limit := time.After(waitLimit)
	for listening := false; !listening; {
		select {
		case <-p.Done():
			listening = true
		case <-limit:
			t.Fatalf("worker neither listened on vsock nor exited within %s\n%s", waitLimit, p.Logs())
		case <-time.After(20 * time.Millisecond):
			listening = strings.Contains(p.Logs(), `msg="Listening on"`)
		}
	}
	out := p.Logs()
	if strings.Contains(out, "too many colons") {
		t.Fatalf("output: got %q, want the address parsed as vsock", out)
	}
	exited := false
	select {
	case <-p.Done():
		exited = true
	default:
	}
	var ee *exec.ExitError
	if !exited {
		// This machine has vsock: the worker listens there.
		t.Logf("listening on vsock: %s", out)
		if code, _ := p.Stop(t, waitLimit); code != 0 {
			t.Errorf("exit code: got %d, want 0", code)
		}
	} else {
		if !errors.As(p.Err(), &ee) {
			t.Fatalf("exit: got %v, want an exit code\n%s", p.Err(), out)
		}
		lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
		last := lines[len(lines)-1]
		if got, want := ee.ExitCode(), 1; got != want {
			t.Errorf("exit code: got %v, want %v\n%s", got, want, out)
		}
		if want := "worker: --web.listen-address vsock://:19847: vsock: "; !strings.HasPrefix(last, want) {
			t.Errorf("last line: got %q, want it to start with %q", last, want)
		}
		t.Logf("no vsock here: %s", last)
	}

	var ee2 *exec.ExitError
	out, err := runWorker(t, "--web.listen-address", "vsock://:port", "--db.path", filepath.Join(t.TempDir(), "worker.db"))
	if !errors.As(err, &ee2) || ee2.ExitCode() != 2 {
		t.Fatalf("vsock://:port: got %v, want exit code 2\n%s", err, out)
	}
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if got, want := lines[len(lines)-1], `worker: --web.listen-address vsock://:port: parse "vsock://:port": invalid port ":port" after host`; got != want {
		t.Errorf("last line: got %q, want %q", got, want)
	}
}

var hrefRE = regexp.MustCompile(`href="([^"#]+)"`)

// Ensure the landing page has no dead link: without --web.enable-pprof it
// links no profile and /debug/pprof/ is 404; with it, the heap and CPU
// profiles it links answer 200.
func TestWorker_LandingPagePprof(t *testing.T) {
	for _, enabled := range []bool{false, true} {
		t.Run(fmt.Sprint("pprof=", enabled), func(t *testing.T) {
			var args []string
			if enabled {
				args = append(args, "--web.enable-pprof")
			}
			w := MustStartWorker(t, "", args...)
			code, page, err := w.Get("/")
			if err != nil || code != 200 {
				t.Fatalf("GET /: got %d %v, want 200", code, err)
			}
			if got := strings.Contains(page, "debug/pprof/heap"); got != enabled {
				t.Errorf("landing page links debug/pprof/heap: got %v, want %v", got, enabled)
			}
			links := hrefRE.FindAllStringSubmatch(page, -1)
			if len(links) < 3 {
				t.Fatalf("landing page: got %d links, want at least 3\n%s", len(links), page)
			}
			for _, m := range links {
				link := m[1]
				if strings.Contains(link, "://") {
					continue // pprof.me
				}
				link = "/" + strings.TrimPrefix(strings.Replace(link, "seconds=60", "seconds=1", 1), "/")
				if got := w.Status(link); got != 200 {
					t.Errorf("landing page link %s: got %d, want 200", m[1], got)
				}
			}
			want := 404
			if enabled {
				want = 200
			}
			if got := w.Status("/debug/pprof/heap"); got != want {
				t.Errorf("GET /debug/pprof/heap: got %d, want %d", got, want)
			}
			if code, _ := w.Stop(t, waitLimit); code != 0 {
				t.Errorf("exit code: got %d, want 0", code)
			}
		})
	}
}
