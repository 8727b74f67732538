package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Ensure readProc reads a process's RSS and counts the CPU of the children
// it waited for, as the cron stand-in's is measured.
func TestReadProc_ChildrenCPU(t *testing.T) {
	before, err := readProc(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if before.rss <= 0 {
		t.Fatalf("rss: got %d, want > 0", before.rss)
	}
	sh := exec.Command("sh", "-c", `i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done`)
	if err := sh.Run(); err != nil {
		t.Fatal(err)
	}
	after, err := readProc(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// /proc counts in ticks of 10 ms: allow one for each of user and system.
	child := sh.ProcessState.UserTime() + sh.ProcessState.SystemTime()
	if got, want := after.cpu-before.cpu, child-20*time.Millisecond; got < want {
		t.Fatalf("cpu: got %v more, want at least the child's %v (less 2 ticks)", got, child)
	}
}

// Ensure one run of the cron stand-in's script, as runCron writes it, runs
// a job and records it in job_runs.
func TestRunCron_Script(t *testing.T) {
	if _, err := exec.LookPath("sqlite3"); err != nil {
		t.Skip("no sqlite3 CLI")
	}
	db := filepath.Join(t.TempDir(), "cron.db")
	if b, err := exec.Command("sqlite3", db, setupSQL).CombinedOutput(); err != nil {
		t.Fatalf("setup: %v: %s", err, b)
	}
	cmd := exec.Command("sqlite3", "-bail", db)
	cmd.Stdin = strings.NewReader(cronScript(jobs[0], time.Now()))
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("run: %v: %s", err, b)
	}
	n, err := runsRecorded(db)
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Fatalf("job_runs rows: got %d, want 1", n)
	}
}
