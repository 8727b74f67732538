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
// metric (one per label set) is judged on its own.
type Spec struct {
	Name string      `json:"name"`
	Kind detect.Kind `json:"kind"`
	// Tolerance is the growth of the high-water mark that is still healthy:
	// a count for Count, a fraction of the early high-water mark for Memory.
	Tolerance float64 `json:"tolerance"`
	// Floor is, for Memory, the least growth in bytes that can be a leak.
	Floor float64 `json:"floor,omitempty"`
	// Why says where the tolerance comes from; it is shown in the report.
	Why string `json:"why"`
}

// Tolerances of the default watch list. docs/soak.md explains each; the
// numbers come from the worker's shape (a pool of max_open_conns=4, two FDs
// per SQLite connection in WAL mode plus one for -shm, a handful of jobs
// running at once) and from healthy soaks of it.
const (
	// DefaultFDTolerance covers the pool growing from one connection to
	// four (3 × 2 FDs) plus the -shm file and a keep-alive scrape socket.
	DefaultFDTolerance = 8
	// DefaultConnTolerance covers the pool growing from one connection to
	// its limit of four. A leak bounded by the pool is caught by the
	// pool-pinned invariant instead.
	DefaultConnTolerance = 3
	// DefaultStmtTolerance covers statements that a job holds prepared
	// while it runs, a few per connection.
	DefaultStmtTolerance = 8
	// DefaultGoroutineTolerance covers a job goroutine per concurrently
	// running job, HTTP connection goroutines and database/sql's opener.
	DefaultGoroutineTolerance = 10
	// DefaultRSSTolerance is the relative growth of resident memory still
	// healthy after warm-up: allocator arenas and SQLite's page cache settle
	// late.
	DefaultRSSTolerance = 0.25
	// DefaultRSSFloor keeps a small process from turning 25% of a few MiB
	// into an alarm.
	DefaultRSSFloor = 4 << 20
	// DefaultHeapTolerance is the relative growth of the in-use heap still
	// healthy after warm-up; the GC lets it swing by up to GOGC=100%, but
	// its high-water mark is stable when nothing leaks.
	DefaultHeapTolerance = 0.25
	// DefaultHeapFloor keeps a tiny heap from turning a few KiB into 25%.
	DefaultHeapFloor = 2 << 20
)

// DefaultWatch is the watch list used unless --watch is given.
var DefaultWatch = []Spec{
	{Name: "process_open_fds", Kind: detect.Count, Tolerance: DefaultFDTolerance,
		Why: "pool 1→4 connections × 2 FDs, -shm, a scrape socket"},
	{Name: "worker_open_fds", Kind: detect.Count, Tolerance: DefaultFDTolerance,
		Why: "as process_open_fds, per FD type"},
	{Name: "go_sql_open_connections", Kind: detect.Count, Tolerance: DefaultConnTolerance,
		Why: "pool growing from 1 to max_open_conns=4"},
	{Name: "go_sql_in_use_connections", Kind: detect.Count, Tolerance: DefaultConnTolerance,
		Why: "pool growing from 1 to max_open_conns=4"},
	{Name: "worker_db_connections_open", Kind: detect.Count, Tolerance: DefaultConnTolerance,
		Why: "pool growing from 1 to max_open_conns=4"},
	{Name: "worker_db_handles_open", Kind: detect.Count, Tolerance: 0,
		Why: "one handle, always; any rise is a leak"},
	{Name: "worker_db_statements_open", Kind: detect.Count, Tolerance: DefaultStmtTolerance,
		Why: "statements held by running jobs, a few per connection"},
	{Name: "go_goroutines", Kind: detect.Count, Tolerance: DefaultGoroutineTolerance,
		Why: "jobs running at once, HTTP connections, pool opener"},
	{Name: "process_resident_memory_bytes", Kind: detect.Memory, Tolerance: DefaultRSSTolerance, Floor: DefaultRSSFloor,
		Why: "allocator and SQLite page cache settle after warm-up"},
	{Name: "go_memstats_heap_inuse_bytes", Kind: detect.Memory, Tolerance: DefaultHeapTolerance, Floor: DefaultHeapFloor,
		Why: "GC cycles swing the heap; its high-water mark holds"},
}

// SpecFor returns the Spec of name: the default one when name is on the
// default list, otherwise a memory spec for names ending in _bytes and a
// count spec for the rest.
func SpecFor(name string) Spec {
	for _, s := range DefaultWatch {
		if s.Name == name {
			return s
		}
	}
	if strings.HasSuffix(name, "_bytes") {
		return Spec{Name: name, Kind: detect.Memory, Tolerance: DefaultRSSTolerance, Floor: DefaultHeapFloor,
			Why: "default for memory series"}
	}
	return Spec{Name: name, Kind: detect.Count, Tolerance: DefaultFDTolerance, Why: "default for count series"}
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
