// Package target starts the process under soak, waits for its metrics
// endpoint, and stops it with SIGTERM at the end, telling whether it exited
// cleanly.
package target

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"syscall"
	"time"
)

// Defaults for Process.
const (
	// DefaultReadyTimeout bounds the wait for the metrics URL to answer.
	DefaultReadyTimeout = 60 * time.Second
	// DefaultStopTimeout bounds the wait after SIGTERM before SIGKILL. It
	// is longer than the soak config's 30 s scheduler.shutdown_grace.
	DefaultStopTimeout = 45 * time.Second
	// readyPoll is how often the metrics URL is tried while starting.
	readyPoll = 100 * time.Millisecond
)

// Errors of Process.
var (
	ErrExited      = errors.New("target exited")
	ErrNeverReady  = errors.New("metrics URL never answered")
	ErrKilled      = errors.New("target ignored SIGTERM and was killed")
	ErrUncleanExit = errors.New("target exited uncleanly")
	ErrNotStarted  = errors.New("target not started")
)

// Process is a started target.
type Process struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error // from Wait; read after done is closed
}

// Start runs name with args, its output going to out.
func Start(name string, args []string, out io.Writer) (*Process, error) {
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("cannot start %s: %w", name, err)
	}
	p := &Process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Pid returns the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// ExitErr returns how the process exited: nil for status 0. Call it after
// Done is closed.
func (p *Process) ExitErr() error { return p.err }

// WaitReady polls url until it answers 200, the process exits, ctx is done
// or timeout passes.
func (p *Process) WaitReady(ctx context.Context, url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := &http.Client{Timeout: time.Second}
	defer client.CloseIdleConnections()
	tick := time.NewTicker(readyPoll)
	defer tick.Stop()
	var last error
	for {
		if last = probe(ctx, client, url); last == nil {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("%w before its metrics URL answered: %v", ErrExited, p.err)
		case <-ctx.Done():
			return fmt.Errorf("%w within %s: %s: %v", ErrNeverReady, timeout, url, last)
		case <-tick.C:
		}
	}
}

func probe(ctx context.Context, client *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %s", resp.Status)
	}
	return nil
}

// Stop sends SIGTERM and waits up to timeout for the process to exit,
// killing it after that. It returns nil for a clean exit (status 0 after
// SIGTERM), ErrKilled, ErrUncleanExit or, when the process was already
// gone, ErrExited; all wrapped with the detail.
func (p *Process) Stop(timeout time.Duration) error {
	select {
	case <-p.done:
		return fmt.Errorf("%w before it was stopped: %v", ErrExited, p.err)
	default:
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		<-p.done
		return fmt.Errorf("%w before it was stopped: %v", ErrExited, p.err)
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-p.done:
		if p.err != nil {
			return fmt.Errorf("%w after SIGTERM: %v", ErrUncleanExit, p.err)
		}
		return nil
	case <-timer.C:
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%w after %s", ErrKilled, timeout)
	}
}

// Kill kills the process if it still runs and waits for it; for cleanup
// on error paths.
func (p *Process) Kill() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}
