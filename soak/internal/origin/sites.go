package origin

import (
	"cmp"
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/google/pprof/profile"
)

// Site is one call site: the first frame of the program in the stacks that
// opened the objects, started the goroutines or allocated the bytes.
type Site struct {
	Function string  `json:"function"`
	File     string  `json:"file"`
	Line     int64   `json:"line"`
	Growth   float64 `json:"growth"` // at the end minus at the base
	Open     float64 `json:"open"`   // at the end: objects, goroutines or bytes in use
	// Callers are the program frames above Function, nearest first, as
	// "function file:line", of the stack that holds the most at the end.
	Callers []string `json:"callers,omitempty"`
}

// Where returns the site for people: the function without its package
// path, and the file's last two path elements with the line.
func (s Site) Where() string {
	return fmt.Sprintf("%s (%s:%d)", shortFunc(s.Function), shortFile(s.File), s.Line)
}

// Frames returns Function and its Callers' functions, nearest first.
func (s Site) Frames() []string {
	out := []string{s.Function}
	for _, c := range s.Callers {
		fn, _, _ := strings.Cut(c, " ")
		out = append(out, fn)
	}
	return out
}

func shortFunc(fn string) string { return fn[strings.LastIndexByte(fn, '/')+1:] }

func shortFile(f string) string {
	dir, base := path.Split(f)
	if dir == "" {
		return base
	}
	return path.Join(path.Base(dir), base)
}

// maxCallers bounds Site.Callers.
const maxCallers = 4

type siteKey struct {
	fn, file string
	line     int64
}

type frame struct {
	fn, file string
	line     int64
}

// frames returns the frames of a sample, leaf first, inlined ones included.
func frames(s *profile.Sample) []frame {
	var out []frame
	for _, loc := range s.Location {
		// The last Line is the caller the ones before were inlined into.
		for _, ln := range loc.Line {
			if ln.Function != nil {
				out = append(out, frame{ln.Function.Name, ln.Function.Filename, ln.Line})
			}
		}
	}
	return out
}

// siteOf returns the index in fs of the frame a sample is grouped by: the
// first of the program, or else the first outside the runtime (a goroutine
// of database/sql's own, such as a handle's connectionOpener), or else the
// leaf. It returns -1 for a sample without frames.
func siteOf(fs []frame) int {
	if i := slices.IndexFunc(fs, func(f frame) bool { return !infrastructure(f.fn) }); i >= 0 {
		return i
	}
	if i := slices.IndexFunc(fs, func(f frame) bool { return !runtimeFunc(f.fn) }); i >= 0 {
		return i
	}
	if len(fs) == 0 {
		return -1
	}
	return 0
}

// callers returns up to maxCallers program frames above fs[i].
func callers(fs []frame, i int) []string {
	var out []string
	for _, f := range fs[i+1:] {
		if len(out) == maxCallers {
			break
		}
		if !infrastructure(f.fn) {
			out = append(out, fmt.Sprintf("%s %s:%d", f.fn, f.file, f.line))
		}
	}
	return out
}

// tally sums sample value index of p by site. Callers come from the stack
// of each site that holds the most.
func tally(p *profile.Profile, index int) map[siteKey]*Site {
	out := map[siteKey]*Site{}
	best := map[siteKey]float64{}
	for _, s := range p.Sample {
		fs := frames(s)
		i := siteOf(fs)
		if i < 0 || index >= len(s.Value) {
			continue
		}
		v := float64(s.Value[index])
		k := siteKey{fs[i].fn, fs[i].file, fs[i].line}
		st, ok := out[k]
		if !ok {
			st = &Site{Function: k.fn, File: k.file, Line: k.line}
			out[k] = st
		}
		st.Open += v
		if v > best[k] || !ok {
			best[k], st.Callers = v, callers(fs, i)
		}
	}
	return out
}

// valueIndex returns the index of the sample value the soak reads: the
// count of a goroutine or sqlcount profile, inuse_space of a heap profile.
func valueIndex(p *profile.Profile, name string) (int, error) {
	if name != Heap {
		if len(p.SampleType) == 0 {
			return 0, fmt.Errorf("%s profile has no sample type", name)
		}
		return 0, nil
	}
	return p.SampleIndexByName("inuse_space")
}

// Diff returns the sites of end with their growth since base, those that
// grew first, by growth, then by what they hold at the end. base may be
// nil: everything in end grew.
func Diff(base, end *profile.Profile, name string) ([]Site, error) {
	ei, err := valueIndex(end, name)
	if err != nil {
		return nil, err
	}
	now := tally(end, ei)
	if base != nil {
		bi, err := valueIndex(base, name)
		if err != nil {
			return nil, err
		}
		for k, b := range tally(base, bi) {
			if s, ok := now[k]; ok {
				s.Growth -= b.Open
			} else {
				now[k] = &Site{Function: k.fn, File: k.file, Line: k.line, Growth: -b.Open, Callers: b.Callers}
			}
		}
	}
	out := make([]Site, 0, len(now))
	for _, s := range now {
		s.Growth += s.Open
		out = append(out, *s)
	}
	slices.SortFunc(out, func(a, b Site) int {
		return cmp.Or(cmp.Compare(b.Growth, a.Growth), cmp.Compare(b.Open, a.Open),
			strings.Compare(a.Function, b.Function), cmp.Compare(a.Line, b.Line))
	})
	return out, nil
}
