// Package outside runs Go code the way a module outside this repository
// would: in a module of its own, in a temporary directory, that requires
// github.com/sqlworker/worker through a replace directive to this checkout.
// Only the public packages are importable from there, so it proves that
// they, and their examples, are usable by others.
package outside

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// ModulePath is the module path of the modules Module writes.
const ModulePath = "example.com/outside"

// RepoRoot returns the directory of this module's go.mod.
func RepoRoot(tb testing.TB) string {
	tb.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		tb.Fatalf("cannot find the module root: %v", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		tb.Fatal("cannot find the module root: not in a module")
	}
	return filepath.Dir(gomod)
}

// Module writes a module into a new tb.TempDir() with files (paths relative
// to the module root, contents) and returns its directory. Its go.mod
// requires github.com/sqlworker/worker, replaced by this checkout, and its
// go.sum starts as this module's, so that the versions this module pins are
// found in the module cache.
func Module(tb testing.TB, files map[string][]byte) string {
	tb.Helper()
	root := RepoRoot(tb)
	dir := tb.TempDir()
	goVersion := "1.26"
	if b, err := os.ReadFile(filepath.Join(root, "go.mod")); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "go "); ok {
				goVersion = strings.TrimSpace(v)
				break
			}
		}
	}
	gomod := fmt.Sprintf("module %s\n\ngo %s\n\nrequire github.com/sqlworker/worker v0.0.0\n\nreplace github.com/sqlworker/worker => %s\n", ModulePath, goVersion, root)
	write(tb, filepath.Join(dir, "go.mod"), []byte(gomod))
	if sum, err := os.ReadFile(filepath.Join(root, "go.sum")); err == nil {
		write(tb, filepath.Join(dir, "go.sum"), sum)
	}
	for name, content := range files {
		write(tb, filepath.Join(dir, name), content)
	}
	return dir
}

func write(tb testing.TB, path string, content []byte) {
	tb.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(path, content, 0o644); err != nil {
		tb.Fatal(err)
	}
}

// Go runs the go command in dir with args, as a user of the module would:
// GOFLAGS from the environment plus -mod=mod, which lets it complete go.mod
// and go.sum, GOPROXY and the caches from the environment, and no
// workspace. It fails tb with the output when the command fails, and
// returns the output otherwise.
func Go(tb testing.TB, dir string, args ...string) string {
	tb.Helper()
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS="+strings.TrimSpace(os.Getenv("GOFLAGS")+" -mod=mod"), "GOWORK=off")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		tb.Fatalf("go %s in %s: %v\n%s", strings.Join(args, " "), dir, err, out.Bytes())
	}
	return out.String()
}
