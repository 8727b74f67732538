package workertest

import (
	"bytes"
	"io"
	"net"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Process is a child process of a test, such as a worker or a Prometheus
// server. Its output is kept in memory for Logs; it is killed at cleanup if
// it still runs.
type Process struct {
	Cmd  *exec.Cmd
	name string
	out  *SyncBuffer
	done chan struct{}
	err  error
}

// StartProcess starts argv[0] with the rest of argv as its arguments and env
// added to the environment. It is killed at cleanup if it still runs, and
// the end of its output, named name, is logged when the test failed.
func StartProcess(tb testing.TB, name string, env []string, argv ...string) *Process {
	tb.Helper()
	return startProcess(tb, name, env, argv, nil)
}

// startProcess is StartProcess also copying the output to tee, which is
// closed when the process has exited.
func startProcess(tb testing.TB, name string, env, argv []string, tee io.WriteCloser) *Process {
	tb.Helper()
	p := &Process{Cmd: exec.Command(argv[0], argv[1:]...), name: name, out: &SyncBuffer{}, done: make(chan struct{})}
	p.Cmd.Env = append(os.Environ(), env...)
	p.Cmd.SysProcAttr = sysProcAttr()
	var out io.Writer = p.out
	if tee != nil {
		out = io.MultiWriter(p.out, tee)
	}
	p.Cmd.Stdout, p.Cmd.Stderr = out, out
	if err := p.Cmd.Start(); err != nil {
		tb.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.err = p.Cmd.Wait()
		if tee != nil {
			tee.Close()
		}
		close(p.done)
	}()
	tb.Cleanup(func() {
		_ = p.Cmd.Process.Kill()
		<-p.done
		if tb.Failed() {
			tb.Logf("%s output (last 8 KiB):\n%s", name, tail(p.Logs(), 8<<10))
		}
	})
	return p
}

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Err returns the process's exit error, once Done is closed.
func (p *Process) Err() error {
	<-p.done
	return p.err
}

// Exited reports whether the process has exited.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Logs returns what the process wrote to stdout and stderr so far.
func (p *Process) Logs() string { return p.out.String() }

// Stop sends SIGTERM and waits up to limit for the exit; it returns the exit
// code and how long the exit took.
func (p *Process) Stop(tb testing.TB, limit time.Duration) (int, time.Duration) {
	tb.Helper()
	start := time.Now()
	if err := p.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		tb.Fatal(err)
	}
	select {
	case <-p.done:
	case <-time.After(limit):
		tb.Fatalf("%s did not exit within %s of SIGTERM\n%s", p.name, limit, tail(p.Logs(), 8<<10))
	}
	return p.Cmd.ProcessState.ExitCode(), time.Since(start)
}

// Kill sends SIGKILL and waits for the exit.
func (p *Process) Kill(tb testing.TB) {
	tb.Helper()
	if err := p.Cmd.Process.Signal(syscall.SIGKILL); err != nil {
		tb.Fatal(err)
	}
	<-p.done
}

// FreeAddr returns a loopback address that was free a moment ago, for a
// server that cannot listen on port 0 and say which port it got.
func FreeAddr(tb testing.TB) string {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// SyncBuffer is a bytes.Buffer safe for concurrent writes and reads: a log
// sink that a test reads while a worker writes to it.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns what was written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}
