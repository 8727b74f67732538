package outside_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/sqlworker/worker/internal/outside"
)

// examplePackages are the public packages whose example files must work
// from another module; "." is the root package, worker.
var examplePackages = []string{".", "sqlcount", "sqlcount/sqlcounttest", "fdstat", "jobtest", "web"}

var exampleFunc = regexp.MustCompile(`(?m)^func (Example\w*)\(\)`)

// Ensure the public packages' examples compile and pass, with their
// outputs, when copied into a module outside this repository.
func TestExamples_Outside(t *testing.T) {
	root := outside.RepoRoot(t)
	files := make(map[string][]byte)
	var want []string
	for _, pkg := range examplePackages {
		paths, err := filepath.Glob(filepath.Join(root, pkg, "example*_test.go"))
		if err != nil {
			t.Fatal(err)
		}
		if len(paths) == 0 {
			t.Fatalf("%s: got no example files, want some", pkg)
		}
		for _, p := range paths {
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			files[filepath.Join(label(pkg)+"examples", filepath.Base(p))] = b
			for _, m := range exampleFunc.FindAllSubmatch(b, -1) {
				want = append(want, label(pkg)+"."+string(m[1]))
			}
		}
	}
	dir := outside.Module(t, files)
	out := outside.Go(t, dir, "test", "-count=1", "-run", "^Example", "-v", "./...")
	for _, ex := range want {
		name := ex[strings.IndexByte(ex, '.')+1:]
		if !strings.Contains(out, "--- PASS: "+name+" ") {
			t.Errorf("%s: got no PASS line, want one\n%s", ex, out)
		}
	}
	if got, want := strings.Count(out, "--- PASS: Example"), len(want); got != want {
		t.Errorf("examples passed: got %v, want %v\n%s", got, want, out)
	}
	if strings.Contains(out, "--- FAIL") {
		t.Errorf("got failures:\n%s", out)
	}
}

// label names a package of examplePackages: its directory, or worker for
// the root package.
func label(pkg string) string {
	if pkg == "." {
		return "worker"
	}
	return pkg
}
