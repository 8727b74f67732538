package alert_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sqlworker/worker/soak/internal/alert"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// alertmanagerConfig routes everything to a receiver that sends nowhere:
// the test reads the alert back from the API.
const alertmanagerConfig = `route:
  receiver: soak
  group_wait: 1h
receivers:
  - name: soak
`

// startAlertmanager runs a real Alertmanager on a loopback port and returns
// its base URL. It fails, not skips, when the binary is missing: the
// Makefile (deploy-tools) provisions it.
func startAlertmanager(t *testing.T) string {
	t.Helper()
	bin := ""
	for _, name := range []string{"prometheus-alertmanager", "alertmanager"} {
		if p, err := exec.LookPath(name); err == nil {
			bin = p
			break
		}
	}
	if bin == "" {
		t.Fatal("alertmanager not found as prometheus-alertmanager or alertmanager; run `make deploy-tools` (apt-get install prometheus-alertmanager)")
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "alertmanager.yml")
	if err := os.WriteFile(cfg, []byte(alertmanagerConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()

	cmd := exec.Command(bin,
		"--config.file="+cfg,
		"--storage.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		"--cluster.listen-address=",
		"--log.level=warn")
	var logs strings.Builder
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})

	base := "http://" + addr
	client := &http.Client{Timeout: time.Second}
	defer client.CloseIdleConnections()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for range 300 { // 30 s at most
		resp, err := client.Get(base + "/-/ready")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return base
			}
		}
		select {
		case <-done:
			t.Fatalf("alertmanager exited: %s", logs.String())
		case <-tick.C:
		}
	}
	t.Fatalf("alertmanager not ready at %s: %s", base, logs.String())
	return ""
}

// gettableAlert is the part of Alertmanager's GET /api/v2/alerts the test
// reads.
type gettableAlert struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	Status      struct {
		State string `json:"state"`
	} `json:"status"`
}

// Ensure a posted leak alert reaches a real Alertmanager with its series,
// slope and run id.
func TestPost_Alertmanager(t *testing.T) {
	base := startAlertmanager(t)
	client := &http.Client{}
	defer client.CloseIdleConnections()

	want := alert.Alert{
		Labels: map[string]string{
			"alertname": alert.NameLeak,
			"series":    `worker_open_fds{type="file"}`,
			"run_id":    "soak-test-1",
			"severity":  "critical",
		},
		Annotations: map[string]string{
			"summary":        "worker_open_fds{type=\"file\"} keeps rising",
			"slope_per_hour": "+25200",
		},
		StartsAt: time.Now(),
	}
	if err := alert.Post(context.Background(), client, base+"/", []alert.Alert{want}); err != nil {
		t.Fatalf("got %v, want nil", err)
	}

	resp, err := client.Get(base + "/api/v2/alerts?filter=" + "alertname%3D%22" + alert.NameLeak + "%22")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got []gettableAlert
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 {
		t.Fatalf("got %d alerts, want 1: %+v", len(got), got)
	}
	for k, v := range want.Labels {
		if got[0].Labels[k] != v {
			t.Fatalf("label %s=%q, want %q", k, got[0].Labels[k], v)
		}
	}
	if got, want := got[0].Annotations["slope_per_hour"], "+25200"; got != want {
		t.Fatalf("annotation slope_per_hour=%q, want %q", got, want)
	}
	if got, want := got[0].Status.State, "active"; got != want {
		t.Fatalf("state %q, want %q", got, want)
	}
}

// Ensure a refused POST is an error that says why.
func TestPost_Refused(t *testing.T) {
	base := startAlertmanager(t)
	client := &http.Client{}
	defer client.CloseIdleConnections()
	// An alert without labels is invalid.
	err := alert.Post(context.Background(), client, base, []alert.Alert{{Labels: map[string]string{}}})
	if err == nil || !strings.Contains(err.Error(), "400") {
		t.Fatalf("got %v, want a 400 error", err)
	}
}

// Ensure nothing is posted when there is nothing to say.
func TestPost_Empty(t *testing.T) {
	if err := alert.Post(context.Background(), nil, "http://127.0.0.1:1", nil); err != nil {
		t.Fatalf("got %v, want nil", err)
	}
}
