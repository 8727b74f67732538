package workertest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"go.uber.org/goleak"

	"github.com/sqlworker/worker/internal/db"
)

// Binary is a worker build for RunMain; RunMain sets *Path to where it built it.
type Binary struct {
	Path *string
	Tags string // build tags, "" for none
}

// RunMain is a TestMain for packages that start the worker: it builds each
// binary into a temporary directory, runs the tests, checks for leaked
// goroutines after a passing run, removes the directory and exits.
func RunMain(m *testing.M, bins ...Binary) {
	os.Exit(runMain(m, bins))
}

func runMain(m *testing.M, bins []Binary) int {
	root, err := ModuleRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	dir, err := os.MkdirTemp("", "worker-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	for i, b := range bins {
		*b.Path = filepath.Join(dir, fmt.Sprintf("worker-%d", i))
		if err := Build(root, *b.Path, b.Tags); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			return 1
		}
	}
	return code
}

// MustOpenHandle returns an opened Handle on a new database in tb.TempDir(),
// closed at cleanup.
func MustOpenHandle(tb testing.TB) *db.Handle {
	tb.Helper()
	h := db.New(db.Config{Path: filepath.Join(tb.TempDir(), "worker.db")})
	if _, err := h.Init(context.Background()); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := h.Close(context.Background()); err != nil {
			tb.Error(err)
		}
	})
	return h
}
