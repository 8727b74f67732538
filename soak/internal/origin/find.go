package origin

import (
	"cmp"
	"fmt"

	"github.com/google/pprof/profile"
)

// Result is what the soak found about where its leaks come from; it is
// report.json's "origins".
type Result struct {
	// URLs are the pprof bases the profiles were taken from.
	URLs []string `json:"pprof_urls"`
	// Unavailable says why no origin is given, when none could be.
	Unavailable string    `json:"unavailable,omitempty"`
	Findings    []Finding `json:"findings"`
}

// Finding is where one leaking series grew.
type Finding struct {
	Series  string `json:"series"` // its key in the report
	Replica string `json:"replica,omitempty"`
	Profile string `json:"profile,omitempty"`
	Unit    string `json:"unit,omitempty"` // count or bytes
	// Measure is "growth" when Sites are ranked by what they added between
	// the base and the end, "open" when nothing grew and they are ranked
	// by what they hold at the end.
	Measure  string  `json:"measure,omitempty"`
	Base     string  `json:"base,omitempty"` // phase of the base: start or warm-up
	BaseAt   float64 `json:"base_at_seconds,omitempty"`
	EndAt    float64 `json:"end_at_seconds,omitempty"`
	BaseFile string  `json:"base_file,omitempty"` // relative to the report dir
	EndFile  string  `json:"end_file,omitempty"`
	Sites    []Site  `json:"sites"`
	// SeriesGrowth is what the series grew by between the base and the
	// end; Explains is set when the sites' growth accounts for at least
	// MinShare of it (always for bytes, whose heap is sampled and whose
	// resident size holds more than the heap): only then does the verdict
	// name the top site.
	SeriesGrowth float64 `json:"series_growth"`
	Explains     bool    `json:"explains"`
	// Note says how the profile relates to the series, or why no site is
	// given.
	Note string `json:"note,omitempty"`
}

// Top returns the site that added (or holds) the most, and false when
// there is none.
func (f Finding) Top() (Site, bool) {
	if len(f.Sites) == 0 {
		return Site{}, false
	}
	return f.Sites[0], true
}

// Amount formats what a site added (or holds) in the finding's unit.
func (f Finding) Amount(s Site) string {
	if f.Measure == "open" {
		return f.amount(s.Open)
	}
	return "+" + f.amount(s.Growth)
}

func (f Finding) amount(v float64) string {
	if f.Unit == "bytes" {
		return humanBytes(v)
	}
	return fmt.Sprintf("%.0f", v)
}

func humanBytes(b float64) string {
	units := []string{"B", "KiB", "MiB", "GiB"}
	i := 0
	for b >= 1024 && i < len(units)-1 {
		b /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%.0f %s", b, units[i])
	}
	return fmt.Sprintf("%.1f %s", b, units[i])
}

// MinShare is the least share of a count series' growth that the sites
// must account for to be named in the verdict.
const MinShare = 0.5

// Series names one series to find the origin of, with its samples.
type Series struct {
	Key    string
	Name   string
	Labels map[string]string
	T, V   []float64 // seconds into the soak, value
}

// growth returns the series' growth from its last sample at or before
// from to its last sample at or before to.
func (s Series) growth(from, to float64) float64 {
	at := func(t float64) (float64, bool) {
		v, ok := 0.0, false
		for i, ti := range s.T {
			if ti > t {
				break
			}
			v, ok = s.V[i], true
		}
		return v, ok
	}
	a, okA := at(from)
	if !okA && len(s.V) > 0 {
		a, okA = s.V[0], true
	}
	b, okB := at(to)
	if !okA || !okB {
		return 0
	}
	return b - a
}

// Find returns where each series grew between the bases and the end
// profiles. Call it after End.
func (t *Tracker) Find(series []Series) []Finding {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]Finding, 0, len(series))
	for _, s := range series {
		out = append(out, t.find(s))
	}
	return out
}

// find returns where one series grew.
func (t *Tracker) find(s Series) Finding {
	replica := s.Labels["replica"]
	f := Finding{Series: s.Key, Replica: replica, Sites: []Site{}}
	src, ok := SourceOf(s.Name, s.Labels)
	f.Note = src.Note
	if !ok {
		return f
	}
	f.Profile, f.Unit = src.Profile, "count"
	if src.Profile == Heap {
		f.Unit = "bytes"
	}
	base, end := t.base[replica], t.end[replica]
	if end == nil || end.parsed[src.Profile] == nil {
		f.Note = join(f.Note, notServed(src.Profile, end))
		return f
	}
	f.BaseFile, f.EndFile = files(replica, src.Profile)
	f.Base, f.EndAt = t.phase, end.at
	bp := base.profile(src.Profile)
	if bp == nil {
		f.Base, f.BaseFile = "", ""
	} else {
		f.BaseAt = base.at
	}
	sites, err := Diff(bp, end.parsed[src.Profile], src.Profile)
	if err != nil {
		f.Note = join(f.Note, err.Error())
		return f
	}
	f.Measure = "growth"
	var grew float64
	for _, st := range sites {
		if st.Growth > 0 {
			grew += st.Growth
			if len(f.Sites) < MaxSites {
				f.Sites = append(f.Sites, st)
			}
		}
	}
	f.SeriesGrowth = s.growth(f.BaseAt, f.EndAt)
	per := cmp.Or(src.PerObject, 1)
	switch {
	case len(f.Sites) == 0 || src.Listed:
	case f.Unit == "bytes":
		f.Explains = true
	case f.SeriesGrowth > 0:
		f.Explains = grew*per >= MinShare*f.SeriesGrowth
	default:
		// Named by a rule, not grown since the base: only the profile of
		// the series' own objects can say where the grown ones are.
		f.Explains = src.Direct
	}
	if len(f.Sites) == 0 && src.Direct {
		// Nothing grew, but the series itself is counted here: a soak
		// stopped by an invariant at its first samples. Show what is open.
		f.Measure = "open"
		for _, st := range sites {
			if st.Open > 0 && len(f.Sites) < MaxSites {
				f.Sites = append(f.Sites, st)
			}
		}
		f.Explains = len(f.Sites) > 0
	}
	if len(f.Sites) > 0 && !f.Explains && !src.Listed {
		f.Note = join(f.Note, fmt.Sprintf("the sites account for %s of the series' growth of %g: not named in the verdict", f.amount(grew), f.SeriesGrowth))
	}
	if len(f.Sites) == 0 {
		f.Note = join(f.Note, fmt.Sprintf("no site grew in %s between %s and the end", src.Profile, f.Base))
	}
	return f
}

func (s *snapshot) profile(name string) *profile.Profile {
	if s == nil {
		return nil
	}
	return s.parsed[name]
}

// notServed says why profile name is missing from the end snapshot.
func notServed(name string, end *snapshot) string {
	if end == nil {
		return "no profiles were taken at the end"
	}
	why := end.missing[name]
	if name == Handles || name == Conns || name == Stmts {
		return fmt.Sprintf("the target serves no %s profile (%s): it does not count its database objects with a sqlcount that records origins", name, why)
	}
	return fmt.Sprintf("no %s profile: %s", name, why)
}

func join(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return a + "; " + b
}
