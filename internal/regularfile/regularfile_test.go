package regularfile_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sqlworker/worker/internal/regularfile"
)

// Ensure Read refuses what is not a regular file, saying what it is and
// naming it, without blocking on a FIFO nobody writes or reading a device
// that never ends, and reads at most max bytes of a regular file.
func TestRead(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		fifo:        "read " + fifo + ": not a regular file: a named pipe",
		"/dev/zero": "read /dev/zero: not a regular file: a character device",
		dir:         "read " + dir + ": not a regular file: a directory",
	} {
		done := make(chan error, 1)
		go func() { _, err := regularfile.Read(path, 1<<20); done <- err }()
		select {
		case err := <-done:
			if !errors.Is(err, regularfile.ErrNotRegular) || err.Error() != want {
				t.Errorf("Read(%s): got %v, want %q", path, err, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("Read(%s): not returned within 10 s", path)
		}
	}
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, []byte(strings.Repeat("x", 100)), 0o600); err != nil {
		t.Fatal(err)
	}
	for max, want := range map[int64]int{10: 10, 100: 100, 1000: 100} {
		if b, err := regularfile.Read(file, max); err != nil || len(b) != want {
			t.Errorf("Read(file of 100 bytes, %d): got %d bytes (%v), want %d", max, len(b), err, want)
		}
	}
	if _, err := regularfile.Read(filepath.Join(dir, "nope"), 10); err == nil || !strings.HasPrefix(err.Error(), "open ") {
		t.Errorf("Read(missing): got %v, want the open's error", err)
	}
}
