package worker

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sqlworker/worker/internal/config"
)

// Ensure keepRestartSettings keeps old's value of every one of
// RestartSettings and names each, that it keeps nothing else, and that the
// README's "Reloading the config" names each.
func TestKeepRestartSettings(t *testing.T) {
	old := config.Default()
	cfg := config.Default()
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
	cfg.DuplicateCheck += time.Second
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
	if _, kept := keepRestartSettings(old, config.Default()); len(kept) != 0 {
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

// Ensure a Reload whose load never returns (a config file on a hung mount)
// fails with ErrReloadTimeout once reloadLoadTimeout is over, without
// holding up the next Reload, and that one going when Stop is called ends
// with ErrStopped at once: a stuck read never blocks another reload or the
// exit.
func TestWorker_Reload_StuckLoad(t *testing.T) {
	defer func(d time.Duration) { reloadLoadTimeout = d }(reloadLoadTimeout)
	reloadLoadTimeout = 200 * time.Millisecond
	cfg, err := ParseConfig([]byte("builtin:\n  heartbeat: {enabled: false}\n"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.DBPath = filepath.Join(t.TempDir(), "worker.db")
	w, err := New(Options{Config: cfg, Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close(context.Background())
	if err := w.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	stuck := make(chan struct{})
	defer close(stuck)
	stuckLoad := func() (*Config, error) { <-stuck; return cfg, nil }

	if err := w.Reload(stuckLoad); !errors.Is(err, ErrReloadTimeout) {
		t.Fatalf("Reload with a stuck load: got %v, want ErrReloadTimeout", err)
	}
	if err := w.Reload(func() (*Config, error) { return cfg, nil }); err != nil {
		t.Fatalf("Reload after a stuck one: got %v, want nil", err)
	}
	reloadLoadTimeout = time.Hour
	done := make(chan error, 1)
	go func() { done <- w.Reload(stuckLoad) }()
	next := make(chan error, 1)
	go func() { next <- w.Reload(func() (*Config, error) { return cfg, nil }) }() // queued behind it
	if err := w.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, ch := range []chan error{done, next} {
		select {
		case err := <-ch:
			if !errors.Is(err, ErrStopped) {
				t.Errorf("Reload going or queued at Stop: got %v, want ErrStopped", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Reload going or queued at Stop: not returned 10 s after Stop")
		}
	}
}
