package worker

import (
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// Ensure keepRestartSettings keeps old's value of every one of
// RestartSettings and names each, that it keeps nothing else, and that the
// README's "Reloading the config" names each.
func TestKeepRestartSettings(t *testing.T) {
	old := DefaultConfig()
	cfg := DefaultConfig()
	cfg.DBPath += ".other"
	cfg.DBURL = "postgres://elsewhere/db" // kept; Reload refuses a switch of engine before it gets here
	cfg.DBPasswordFile = "/run/secrets/pw"
	cfg.DBReplicaID = "r2"
	cfg.MaxOpenConns++
	cfg.BusyTimeout++
	cfg.MaxPageCount++
	cfg.Checkpoint = "external"
	cfg.Location = time.FixedZone("X", 3600)
	cfg.ShutdownGrace++
	cfg.Lease = 2 * time.Second
	cfg.HistoryRetention++
	cfg.HistoryMaxRowsPerJob++
	cfg.Jobs = cfg.Jobs[:1]
	next, kept := keepRestartSettings(old, cfg)
	if got, want := kept, RestartSettings(); !slices.Equal(got, want) {
		t.Fatalf("kept: got %v, want %v", got, want)
	}
	want := *old
	want.Jobs = cfg.Jobs
	if next.DBPath != want.DBPath || next.DBURL != want.DBURL || next.DBPasswordFile != want.DBPasswordFile ||
		next.DBReplicaID != want.DBReplicaID || next.MaxOpenConns != want.MaxOpenConns || next.BusyTimeout != want.BusyTimeout ||
		next.MaxPageCount != want.MaxPageCount || next.Checkpoint != want.Checkpoint || next.Location != want.Location ||
		next.ShutdownGrace != want.ShutdownGrace || next.Lease != want.Lease || next.HistoryRetention != want.HistoryRetention ||
		next.HistoryMaxRowsPerJob != want.HistoryMaxRowsPerJob {
		t.Fatalf("next: got %+v, want the old values %+v", next, want)
	}
	if got, want := len(next.Jobs), 1; got != want {
		t.Fatalf("jobs of next: got %d, want %d (the new config's)", got, want)
	}
	if _, kept := keepRestartSettings(old, DefaultConfig()); len(kept) != 0 {
		t.Fatalf("kept of an unchanged config: got %v, want none", kept)
	}

	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, _ := strings.Cut(string(readme), "### Reloading the config")
	section, _, _ = strings.Cut(section, "\n## ")
	for _, name := range RestartSettings() {
		short := name[strings.Index(name, ".")+1:]
		if !strings.Contains(section, "`"+name+"`") && !strings.Contains(section, "`"+short+"`") {
			t.Errorf("README's Reloading the config: %s not named", name)
		}
	}
}
