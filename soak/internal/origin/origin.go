// Package origin finds where a Go target's leaks come from. It takes the
// target's profiles from net/http/pprof when the soak starts, again after
// warm-up and at the end, and for each leaking series diffs the profile
// that counts it (sqlcount's handles, connections and statements; Go's
// goroutines; the heap's inuse_space) and groups the growth by call site:
// the first frame of the program, outside the standard library, the SQL
// drivers and sqlcount.
package origin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/google/pprof/profile"
)

// Phases a base can be taken at.
const (
	PhaseStart  = "start"
	PhaseWarmup = "warm-up"
)

// MaxSites bounds the sites listed per finding.
const MaxSites = 5

// MaxProfile bounds what is read of one profile, as the scrape bounds an
// exposition: a target that answers with something else, without end,
// must not hold the harness (the parse of what was read cannot be cut).
const MaxProfile = 32 << 20

// DefaultTimeout bounds each profile's request.
const DefaultTimeout = 10 * time.Second

// MinSpan is the least time between the base profiles and the end ones:
// a soak stopped by a rule broken at its first sample waits this long
// before its end profiles, so that the leak has time to grow at its site
// instead of tying with what the target opened before the soak began.
const MinSpan = 3 * time.Second

// ErrNoPprof is wrapped by Start's error when no target serves pprof.
var ErrNoPprof = errors.New("no net/http/pprof")

// Target is one process's net/http/pprof.
type Target struct {
	Replica string // its replica label in the soak's series; "" for one target
	URL     string // the base, such as http://127.0.0.1:9847/debug/pprof/
}

// snapshot is the profiles of one target taken at one moment.
type snapshot struct {
	at      float64 // seconds into the soak
	raw     map[string][]byte
	parsed  map[string]*profile.Profile
	missing map[string]string // why a profile is absent, by name
}

// Tracker takes every target's profiles at the base and at the end of a
// soak. Start, Warm and End are called in that order from one goroutine;
// Warm fetches in the background and End waits for it.
type Tracker struct {
	client  *http.Client
	targets []Target
	wg      sync.WaitGroup
	mu      sync.Mutex
	phase   string               // of the bases
	base    map[string]*snapshot // by replica
	end     map[string]*snapshot
	taken   time.Time // when the bases were last taken
	// MinSpan is the package's MinSpan unless set before Start.
	MinSpan time.Duration
	// started is closed once Start returned; served says it found a
	// target serving the profiles. Start may run in the background while
	// the soak scrapes: Warm waits for it.
	started chan struct{}
	served  bool
}

// New returns a Tracker of targets.
func New(targets []Target) *Tracker {
	return &Tracker{client: &http.Client{Timeout: DefaultTimeout}, targets: targets, MinSpan: MinSpan, started: make(chan struct{})}
}

// Close releases the Tracker's connections; it waits for a Warm under way.
func (t *Tracker) Close() {
	t.wg.Wait()
	t.client.CloseIdleConnections()
}

// Start takes the first bases, at seconds into the soak. It returns an
// error wrapping ErrNoPprof, saying why, when no target serves the
// goroutine profile: then no origin can be given.
func (t *Tracker) Start(ctx context.Context, at float64) error {
	defer close(t.started)
	snaps := t.takeAll(ctx, at)
	t.mu.Lock()
	t.base, t.phase, t.taken = snaps, PhaseStart, time.Now()
	t.mu.Unlock()
	for _, tg := range t.targets {
		if snaps[tg.Replica].parsed[Goroutine] != nil {
			t.served = true
			return nil
		}
	}
	tg := t.targets[0]
	return fmt.Errorf("%w: %s", ErrNoPprof, snaps[tg.Replica].missing[Goroutine])
}

// Warm takes the bases again once warm-up is over, in the background, so
// that what grew while the target warmed up is not counted.
func (t *Tracker) Warm(ctx context.Context, at float64) {
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		if <-t.started; !t.served {
			return
		}
		snaps := t.takeAll(ctx, at)
		t.mu.Lock()
		defer t.mu.Unlock()
		for r, s := range snaps {
			if s.parsed[Goroutine] != nil {
				t.base[r] = s
			}
		}
		t.phase, t.taken = PhaseWarmup, time.Now()
	}()
}

// End waits for Warm, and takes the end profiles at seconds into the soak,
// or later: at least MinSpan after the bases.
func (t *Tracker) End(ctx context.Context, at float64) {
	t.wg.Wait()
	if wait := t.MinSpan - time.Since(t.taken); wait > 0 {
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
		case <-timer.C:
			at += wait.Seconds()
		}
		timer.Stop()
	}
	snaps := t.takeAll(ctx, at)
	t.mu.Lock()
	t.end = snaps
	t.mu.Unlock()
}

// takeAll fetches every profile of every target, the targets in parallel.
func (t *Tracker) takeAll(ctx context.Context, at float64) map[string]*snapshot {
	out := make([]*snapshot, len(t.targets))
	var wg sync.WaitGroup
	for i, tg := range t.targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = t.take(ctx, tg, at)
		}()
	}
	wg.Wait()
	m := make(map[string]*snapshot, len(out))
	for i, tg := range t.targets {
		m[tg.Replica] = out[i]
	}
	return m
}

// take fetches every profile of one target: the goroutine profile first,
// which every Go program serves with net/http/pprof; when it fails, the
// others are not asked for (a target that hangs costs one timeout).
func (t *Tracker) take(ctx context.Context, tg Target, at float64) *snapshot {
	s := &snapshot{at: at, raw: map[string][]byte{}, parsed: map[string]*profile.Profile{}, missing: map[string]string{}}
	names := append([]string{Goroutine}, slices.DeleteFunc(slices.Clone(Profiles), func(n string) bool { return n == Goroutine })...)
	for _, name := range names {
		if s.parsed[Goroutine] == nil && name != Goroutine {
			s.missing[name] = s.missing[Goroutine]
			continue
		}
		raw, p, err := t.fetch(ctx, tg.URL, name)
		if err != nil {
			s.missing[name] = err.Error()
			continue
		}
		s.raw[name], s.parsed[name] = raw, p
	}
	return s
}

// fetch gets one profile in its binary form. The heap profile is asked to
// collect garbage first, so that inuse_space is up to date.
func (t *Tracker) fetch(ctx context.Context, base, name string) ([]byte, *profile.Profile, error) {
	u := base + name
	if name == Heap {
		u += "?gc=1"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, nil, err
	}
	resp, err := t.client.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", u, err)
	}
	defer resp.Body.Close()
	if resp.ContentLength > MaxProfile {
		return nil, nil, fmt.Errorf("%s: %d bytes, more than a profile's %d MiB", u, resp.ContentLength, MaxProfile>>20)
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, MaxProfile))
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("%s: %s", u, resp.Status)
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", u, err) // the soak is over: no parse to wait for
	}
	p, err := profile.ParseData(raw)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: not a pprof profile: %w", u, err)
	}
	return raw, p, nil
}

// Dir is the directory in the report dir that Save writes the profiles to.
const Dir = "profiles"

// files returns the paths, relative to the report dir, of a replica's
// base and end profile of name.
func files(replica, name string) (base, end string) {
	dir := Dir
	if replica != "" {
		dir = filepath.Join(Dir, "replica-"+replica)
	}
	return filepath.Join(dir, name+".base.pb.gz"), filepath.Join(dir, name+".end.pb.gz")
}

// Save writes every profile taken into reportDir, as files returns them,
// for `go tool pprof -base BASE END`.
func (t *Tracker) Save(reportDir string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, tg := range t.targets {
		for _, name := range Profiles {
			bf, ef := files(tg.Replica, name)
			for _, f := range []struct {
				path string
				s    *snapshot
			}{{bf, t.base[tg.Replica]}, {ef, t.end[tg.Replica]}} {
				if f.s == nil || f.s.raw[name] == nil {
					continue
				}
				p := filepath.Join(reportDir, f.path)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					return fmt.Errorf("cannot save profiles: %w", err)
				}
				if err := os.WriteFile(p, f.s.raw[name], 0o644); err != nil {
					return fmt.Errorf("cannot save profiles: %w", err)
				}
			}
		}
	}
	return nil
}
