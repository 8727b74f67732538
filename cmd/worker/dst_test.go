package main_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// Ensure --config.check lists the next ticks that a daylight-saving change
// skips or repeats, per job and with its policy (issue 23): a fixed-time
// job under dst: cron runs a skipped 02:30 at 03:00 and a repeated one
// once; under dst: wall_clock it skips the one and runs the other twice; a
// job every 15 minutes under dst: cron is left out.
func TestConfigCheck_DSTChanges(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "worker.yml")
	config := `scheduler:
  timezone: Europe/Berlin
jobs:
  - {name: nightly, schedule: "30 2 * * *", sql: SELECT 1}
  - {name: quarter, schedule: "*/15 * * * *", sql: SELECT 1}
  - {name: literal, schedule: "30 2 * * *", sql: SELECT 1, dst: wall_clock}
`
	if err := os.WriteFile(path, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := newCmd("--config.check", "--config.file", path, "--db.path", filepath.Join(dir, "w.db")).CombinedOutput()
	if err != nil {
		t.Fatalf("--config.check: %v\n%s", err, out)
	}
	for _, want := range []string{
		`(?m)^  nightly \(dst: cron\): \d{4}-03-\d\d 02:30 CET does not exist \(the clock moves forward\): runs at 03:00 CEST, right after the change$`,
		`(?m)^  nightly \(dst: cron\): \d{4}-10-\d\d 02:30 occurs twice \(the clock moves back\): runs once, at 02:30 CEST$`,
		`(?m)^  literal \(dst: wall_clock\): \d{4}-03-\d\d 02:30 CET does not exist \(the clock moves forward\): does not run$`,
		`(?m)^  literal \(dst: wall_clock\): \d{4}-10-\d\d 02:30 occurs twice \(the clock moves back\): runs twice, at 02:30 CEST and 02:30 CET$`,
	} {
		if !regexp.MustCompile(want).Match(out) {
			t.Errorf("--config.check: want a line matching %s, got\n%s", want, out)
		}
	}
	if strings.Contains(string(out), "quarter (dst") {
		t.Errorf("--config.check lists the every-15-minutes job under dst: cron:\n%s", out)
	}
}
