package workertest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/sqlworker/worker/internal/db"
)

// buildDir is where RunMain builds binaries; it removes it at exit.
var buildDir string

// Binary is a worker build for RunMain; RunMain sets *Path to where it built it.
type Binary struct {
	Path *string
	Tags string // build tags, "" for none
}

// RunMain is a TestMain for packages that start the worker: it builds each
// binary into a temporary directory (where BuildOnce builds too), runs the
// tests, checks for leaked goroutines after a passing run, removes the
// directory and exits.
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
	buildDir = dir
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

// onceBuilds holds BuildOnce's builds by tags.
var onceBuilds sync.Map // tags → *onceBuild

type onceBuild struct {
	once sync.Once
	path string
	err  error
}

// BuildOnce returns the worker built with tags ("" for none), building it
// the first time a test asks for it, so that a package builds only the
// binaries its selected tests need; parallel tests share the build. It
// needs RunMain as the package's TestMain.
func BuildOnce(tb testing.TB, tags string) string {
	tb.Helper()
	if buildDir == "" {
		tb.Fatal("workertest: BuildOnce needs RunMain as TestMain")
	}
	v, _ := onceBuilds.LoadOrStore(tags, &onceBuild{})
	b := v.(*onceBuild)
	b.once.Do(func() {
		root, err := ModuleRoot()
		if err != nil {
			b.err = err
			return
		}
		name := "worker-once"
		if tags != "" {
			name += "-" + strings.NewReplacer(",", "-", " ", "-").Replace(tags)
		}
		b.path = filepath.Join(buildDir, name)
		b.err = Build(root, b.path, tags)
	})
	if b.err != nil {
		tb.Fatal(b.err)
	}
	return b.path
}

// MustOpenHandle returns an opened Handle on a new database in tb.TempDir(),
// closed at cleanup.
func MustOpenHandle(tb testing.TB) *db.Handle {
	tb.Helper()
	return MustOpenHandleWith(tb, db.Config{})
}

// MustOpenHandleWith is MustOpenHandle with cfg; an empty cfg.Path is a new
// database in tb.TempDir(), unless cfg.URL names a PostgreSQL one.
func MustOpenHandleWith(tb testing.TB, cfg db.Config) *db.Handle {
	tb.Helper()
	if cfg.Path == "" && cfg.URL == "" {
		cfg.Path = filepath.Join(tb.TempDir(), "worker.db")
	}
	h := db.New(cfg)
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
