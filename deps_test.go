package worker_test

import (
	"os/exec"
	"strings"
	"testing"
)

// heavyDeps are the modules the root package must not import: the HTTP
// server toolkit that package web (the daemon's face) brings, and what
// comes with it.
var heavyDeps = []string{
	"github.com/prometheus/exporter-toolkit",
	"github.com/coreos/go-systemd",
	"github.com/mdlayher/vsock",
	"github.com/golang-jwt/jwt",
	"golang.org/x/oauth2",
}

// Ensure the root package carries no HTTP server toolkit, while package web,
// which holds the daemon's face, does: a program that embeds the worker
// gets exporter-toolkit only when it asks for it.
func TestPackage_Deps(t *testing.T) {
	root := deps(t, ".")
	for _, d := range heavyDeps {
		if pkgs := under(root, d); len(pkgs) > 0 {
			t.Errorf("go list -deps .: got %s, want no package of %s", strings.Join(pkgs, ", "), d)
		}
	}
	if pkgs := under(deps(t, "./web"), heavyDeps[0]); len(pkgs) == 0 {
		t.Errorf("go list -deps ./web: got no package of %s, want it: the check above would prove nothing", heavyDeps[0])
	}
}

func deps(t *testing.T, pkg string) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", pkg).Output()
	if err != nil {
		t.Fatalf("go list -deps %s: %v", pkg, err)
	}
	return strings.Fields(string(out))
}

// under returns the packages of module in pkgs.
func under(pkgs []string, module string) []string {
	var out []string
	for _, p := range pkgs {
		if p == module || strings.HasPrefix(p, module+"/") {
			out = append(out, p)
		}
	}
	return out
}
