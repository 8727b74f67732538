package main_test

import (
	"os/exec"
	"strings"
	"testing"
)

// Ensure --web.enable-pprof lists and serves sqlcount's profiles, and that
// the runbook's `go tool pprof -top` reads them: the worker's one handle
// and its connection, opened by the Handle.
func TestWorker_PprofSqlcount(t *testing.T) {
	w := MustStartWorker(t, "", "--web.enable-pprof")
	code, index, err := w.Get("/debug/pprof/")
	if err != nil || code != 200 {
		t.Fatalf("GET /debug/pprof/: got %d %v, want 200", code, err)
	}
	for _, name := range []string{"sqlcount.handles", "sqlcount.conns", "sqlcount.stmts"} {
		if !strings.Contains(index, "href='"+name+"?debug=1'") {
			t.Errorf("/debug/pprof/: got no link to %s, want one\n%s", name, index)
		}
	}
	code, text, err := w.Get("/debug/pprof/sqlcount.handles?debug=1")
	if err != nil || code != 200 {
		t.Fatalf("GET /debug/pprof/sqlcount.handles?debug=1: got %d %v, want 200", code, err)
	}
	if !strings.HasPrefix(text, "sqlcount.handles profile: total 1\n") || !strings.Contains(text, "internal/db.(*Handle).open") {
		t.Errorf("sqlcount.handles: got\n%s\nwant total 1, opened by internal/db.(*Handle).open", text)
	}
	out, err := exec.Command("go", "tool", "pprof", "-top", w.URL("/debug/pprof/sqlcount.conns")).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "internal/db.(*Handle).open") {
		t.Errorf("go tool pprof -top sqlcount.conns: %v, want a line of internal/db.(*Handle).open\n%s", err, out)
	}
	if code, _ := w.Stop(t, waitLimit); code != 0 {
		t.Errorf("exit code: got %d, want 0", code)
	}
}
