package reliability_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sqlworker/worker/internal/workertest"
)

// Ensure a --db.password-file that is not a regular file, or whose first
// line never ends, is refused at once with one line naming the flag, exit 2,
// within the memory and CPU bounds of memLimit. Before, /dev/zero was read
// without end (RSS 260 → 818 MB in 2 s) and a FIFO hung the worker.
func TestPasswordFile_Bounded(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	fifo := filepath.Join(dir, "pw.fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	long := filepath.Join(dir, "pw.long") // 8 MiB, no line end
	if err := os.WriteFile(long, []byte(strings.Repeat("p", 8<<20)), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, path, want string }{
		{"DevZero", "/dev/zero", "worker: --db.password-file: cannot read password file: read /dev/zero: not a regular file: a character device"},
		{"FIFO", fifo, "worker: --db.password-file: cannot read password file: read " + fifo + ": not a regular file: a named pipe"},
		{"Directory", dir, "worker: --db.password-file: cannot read password file: read " + dir + ": not a regular file: a directory"},
		{"LongLine", long, "worker: --db.password-file: password file " + long + ": first line longer than 4096 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			prefix := memLimit(t)
			argv := append(prefix, workerBin, "--db.url", "postgres://worker@db.invalid/jobs", "--db.password-file", tc.path,
				"--web.listen-address", "127.0.0.1:0")
			cmd := exec.Command(argv[0], argv[1:]...)
			var stderr workertest.SyncBuffer
			cmd.Stderr = &stderr
			// Its own process group: a worker stuck under GNU time and
			// prlimit is killed with them.
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
			cmd.WaitDelay = 5 * time.Second
			start := time.Now()
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			var err error
			select {
			case err = <-done:
			case <-time.After(20 * time.Second):
				_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
				<-done
				t.Fatalf("worker did not exit within 20 s\n%s", tail(stderr.String(), 4<<10))
			}
			took, rss := time.Since(start), peakRSS(t, cmd, prefix)
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 2 {
				t.Errorf("exit: got %v, want status 2", err)
			}
			if got := strings.TrimSuffix(stderr.String(), "\n"); got != tc.want {
				t.Errorf("stderr: got %q, want %q", tail(got, 1<<10), tc.want)
			}
			if rss > 100<<20 {
				t.Errorf("peak RSS: got %d MB, want at most 100 MB", rss>>20)
			}
			t.Logf("refused in %s, peak RSS %.1f MB", took.Round(time.Millisecond), float64(rss)/(1<<20))
		})
	}
}
