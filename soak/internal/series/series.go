// Package series owns what the soak watches: the watched metric names with
// the tolerance each is judged by, and the points recorded for every series
// that matches them.
package series

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/prometheus/common/model"

	"github.com/sqlworker/worker/soak/internal/detect"
)

// Spec says how one watched metric name is judged. Every series of the
// metric (one per label set) is judged on its own, against the noise it
// shows (see package detect); the Spec gives the floor under that tolerance
// and, when --tolerance set one, a fixed tolerance instead.
type Spec struct {
	Name string      `json:"name"`
	Kind detect.Kind `json:"kind"`
	// Floor is the least tolerance, in units for Count and bytes for
	// Memory, however quiet the series.
	Floor float64 `json:"floor,omitempty"`
	// Fixed replaces the tolerance from the noise by Tolerance: a count
	// for Count, a fraction of the early high-water mark (at least Floor)
	// for Memory.
	Fixed     bool    `json:"fixed,omitempty"`
	Tolerance float64 `json:"tolerance,omitempty"`
	// Why says where the floor or the fixed tolerance comes from; it is
	// shown in the report.
	Why string `json:"why"`
}

// Floors of the default watch list. docs/soak.md explains each; the
// tolerance itself is measured on every series (1.5 × the peak-to-peak of
// its detrended samples), these are only the least it can be.
const (
	// DefaultCountFloor is the least tolerance of a count series: a rise of
	// 3 steps over the judged window clears it, 2 do not.
	DefaultCountFloor = detect.DefaultCountFloor
	// DefaultRSSFloor is the least tolerance of resident memory: the
	// allocator and SQLite's page cache settle after warm-up, and the clean
	// worker's high-water mark creeps by up to a few MiB in a soak while
	// its samples are smooth.
	DefaultRSSFloor = 4 << 20
	// DefaultHeapFloor is the least tolerance of the in-use heap, which the
	// GC swings by a few MiB; it also keeps a tiny heap from turning a few
	// KiB into an alarm.
	DefaultHeapFloor = 2 << 20
)

// DefaultWatch is the watch list used unless --watch is given.
var DefaultWatch = []Spec{
	{Name: "process_open_fds", Kind: detect.Count, Floor: DefaultCountFloor,
		Why: "measured noise; floor 1.5 FDs"},
	{Name: "worker_open_fds", Kind: detect.Count, Floor: DefaultCountFloor,
		Why: "measured noise; floor 1.5 FDs"},
	{Name: "go_sql_open_connections", Kind: detect.Count, Floor: DefaultCountFloor,
		Why: "measured noise; floor 1.5 connections"},
	{Name: "go_sql_in_use_connections", Kind: detect.Count, Floor: DefaultCountFloor,
		Why: "measured noise; floor 1.5 connections"},
	{Name: "worker_db_connections_open", Kind: detect.Count, Floor: DefaultCountFloor,
		Why: "measured noise; floor 1.5 connections"},
	{Name: "worker_db_handles_open", Kind: detect.Count, Floor: DefaultCountFloor,
		Why: "measured noise; floor 1.5 handles (and the one_handle invariant)"},
	{Name: "worker_db_statements_open", Kind: detect.Count, Floor: DefaultCountFloor,
		Why: "measured noise; floor 1.5 statements"},
	{Name: "go_goroutines", Kind: detect.Count, Floor: DefaultCountFloor,
		Why: "measured noise; floor 1.5 goroutines"},
	{Name: "process_resident_memory_bytes", Kind: detect.Memory, Floor: DefaultRSSFloor,
		Why: "measured noise; floor 4 MiB: allocator and page cache settle"},
	{Name: "go_memstats_heap_inuse_bytes", Kind: detect.Memory, Floor: DefaultHeapFloor,
		Why: "measured noise; floor 2 MiB: GC swings"},
}

// PostgresWatch is added to DefaultWatch on PostgreSQL: each replica's
// backends as the server sees them (worker_db_server_connections summed
// over state by the harness) and the server's client backends in all, read
// from pg_stat_activity by the harness itself.
var PostgresWatch = []Spec{
	{Name: "soak_replica_server_backends", Kind: detect.Count, Floor: DefaultCountFloor,
		Why: "measured noise; floor 1.5 backends (and the server_within_client invariant)"},
	{Name: "soak_server_backends", Kind: detect.Count, Floor: DefaultCountFloor,
		Why: "measured noise; floor 1.5 backends"},
}

// SpecFor returns the Spec of name: the default one when name is on the
// default list, otherwise a memory spec for names ending in _bytes and a
// count spec for the rest.
func SpecFor(name string) Spec {
	for _, s := range slices.Concat(DefaultWatch, PostgresWatch) {
		if s.Name == name {
			return s
		}
	}
	if strings.HasSuffix(name, "_bytes") {
		return Spec{Name: name, Kind: detect.Memory, Floor: DefaultHeapFloor,
			Why: "measured noise; floor 2 MiB (default for memory series)"}
	}
	return Spec{Name: name, Kind: detect.Count, Floor: DefaultCountFloor,
		Why: "measured noise; floor 1.5 (default for count series)"}
}

// Params returns the detector parameters of the final verdict on a series
// of s.
func (s Spec) Params() detect.Params {
	return detect.Params{Kind: s.Kind, Floor: s.Floor, Fixed: s.Fixed, Tolerance: s.Tolerance}
}

// FailFastParams returns the detector parameters of the test repeated at
// every sample under --fail-fast: far stricter, and cheap.
func (s Spec) FailFastParams() detect.Params {
	p := s.Params()
	p.Alpha = detect.DefaultFailFastAlpha
	p.MaxPoints = detect.DefaultFailFastMaxPoints
	p.SkipUnlessTrend = true
	return p
}

// Series is the recorded points of one watched series.
type Series struct {
	Key    string            `json:"key"`    // name{labels}, as shown
	Name   string            `json:"name"`   // metric name
	Labels map[string]string `json:"labels"` // labels without __name__
	Spec   Spec              `json:"-"`
	T      []float64         `json:"-"` // seconds since the soak started
	V      []float64         `json:"-"`
}

// Last returns the latest value, and false when there is none.
func (s *Series) Last() (float64, bool) {
	if len(s.V) == 0 {
		return 0, false
	}
	return s.V[len(s.V)-1], true
}

// After returns the points taken at or after t seconds.
func (s *Series) After(t float64) (ts, vs []float64) {
	i := sort.SearchFloat64s(s.T, t)
	return s.T[i:], s.V[i:]
}

// Recording holds every watched series seen so far.
type Recording struct {
	Watch  []Spec    // what is watched, in display order
	Times  []float64 // seconds since start of every successful scrape
	series map[string]*Series
	order  []*Series
}

// NewRecording returns an empty Recording of the watch list.
func NewRecording(watch []Spec) *Recording {
	return &Recording{Watch: watch, series: make(map[string]*Series)}
}

// Add records the watched samples of one scrape taken t seconds into the
// soak. It returns how many watched samples the scrape held.
func (r *Recording) Add(t float64, vec model.Vector) int {
	r.Times = append(r.Times, t)
	n := 0
	for _, smp := range vec {
		name := string(smp.Metric[model.MetricNameLabel])
		i := slices.IndexFunc(r.Watch, func(s Spec) bool { return s.Name == name })
		if i < 0 {
			continue
		}
		key := Key(smp.Metric)
		s, ok := r.series[key]
		if !ok {
			s = &Series{Key: key, Name: name, Labels: labels(smp.Metric), Spec: r.Watch[i]}
			r.series[key] = s
			r.order = append(r.order, s)
			r.sort()
		}
		s.T = append(s.T, t)
		s.V = append(s.V, float64(smp.Value))
		n++
	}
	return n
}

// sort keeps the series in watch-list order, then by key.
func (r *Recording) sort() {
	pos := func(s *Series) int {
		return slices.IndexFunc(r.Watch, func(w Spec) bool { return w.Name == s.Name })
	}
	slices.SortStableFunc(r.order, func(a, b *Series) int {
		if d := pos(a) - pos(b); d != 0 {
			return d
		}
		return strings.Compare(a.Key, b.Key)
	})
}

// Series returns every recorded series in display order.
func (r *Recording) Series() []*Series { return r.order }

// Get returns the series with key, or nil.
func (r *Recording) Get(key string) *Series { return r.series[key] }

// Missing returns the watched names of which no series was ever seen.
func (r *Recording) Missing() []string {
	var out []string
	for _, w := range r.Watch {
		if !slices.ContainsFunc(r.order, func(s *Series) bool { return s.Name == w.Name }) {
			out = append(out, w.Name)
		}
	}
	return out
}

// Sum returns the sum of the latest values of every series named name, and
// whether there was any.
func (r *Recording) Sum(name string) (float64, bool) {
	var sum float64
	found := false
	for _, s := range r.order {
		if s.Name != name {
			continue
		}
		if v, ok := s.Last(); ok {
			sum += v
			found = true
		}
	}
	return sum, found
}

// Key returns the display key of a metric: its name followed by its labels
// in braces, sorted, or the bare name when it has none.
func Key(m model.Metric) string {
	name := string(m[model.MetricNameLabel])
	ls := labels(m)
	if len(ls) == 0 {
		return name
	}
	keys := make([]string, 0, len(ls))
	for k := range ls {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	b.WriteString(name)
	b.WriteByte('{')
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s=%q", k, ls[k])
	}
	b.WriteByte('}')
	return b.String()
}

func labels(m model.Metric) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		if k != model.MetricNameLabel {
			out[string(k)] = string(v)
		}
	}
	return out
}

// Work lists the series recorded beside the watched ones but not judged:
// the counters of the work done and its cost, from which a comparison of
// two soaks (soak/internal/compare) reads the CPU seconds per job run, and
// the build and runtime of the target, which say whether two soaks are
// alike.
var Work = []Spec{
	{Name: "process_cpu_seconds_total", Why: "CPU spent, for the cost per job run"},
	{Name: "worker_job_runs_total", Why: "job runs finished, the unit of work"},
	{Name: "worker_build_info", Why: "the target's version"},
	{Name: "go_info", Why: "the target's Go version"},
}
