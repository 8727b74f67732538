package target_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sqlworker/worker/soak/internal/target"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// trapTerm exits 0 on SIGTERM.
const trapTerm = `trap 'exit 0' TERM; echo ready; while :; do sleep 0.05; done`

// start runs script under sh and returns once it said "ready", that is
// once its trap is set.
func start(t *testing.T, script string) *target.Process {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	p, err := target.Start("sh", []string{"-c", script}, w)
	w.Close()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bufio.NewReader(r).ReadString('\n'); err != nil {
		t.Fatalf("no ready line: %v", err)
	}
	return p
}

// Ensure Stop tells a clean exit from an unclean one and a killed one.
func TestProcess_Stop(t *testing.T) {
	for _, tc := range []struct {
		name   string
		script string
		want   error
	}{
		{"Clean", trapTerm, nil},
		{"Unclean", `trap 'exit 3' TERM; echo ready; while :; do sleep 0.05; done`, target.ErrUncleanExit},
		{"IgnoresTERM", `trap '' TERM; echo ready; while :; do sleep 0.05; done`, target.ErrKilled},
		{"AlreadyGone", "echo ready; exit 0\n", target.ErrExited},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := start(t, tc.script)
			defer p.Kill()
			if tc.want == target.ErrExited {
				<-p.Done()
			}
			err := p.Stop(500 * time.Millisecond)
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

// Ensure WaitReady gives up on a process that exits or never answers.
func TestProcess_WaitReady(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + l.Addr().String() + "/metrics"
	l.Close()

	p, err := target.Start("sh", []string{"-c", "exit 2"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.WaitReady(context.Background(), url, 10*time.Second); !errors.Is(err, target.ErrExited) {
		t.Fatalf("got %v, want ErrExited", err)
	}

	q := start(t, trapTerm)
	defer q.Kill()
	if err := q.WaitReady(context.Background(), url, 300*time.Millisecond); !errors.Is(err, target.ErrNeverReady) {
		t.Fatalf("got %v, want ErrNeverReady", err)
	}
}
