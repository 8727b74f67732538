package origin

import (
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
	v := s.Growth
	if f.Measure == "open" {
		v = s.Open
	}
	sign := "+"
	if f.Measure == "open" {
		sign = ""
	}
	if f.Unit == "bytes" {
		return sign + humanBytes(v)
	}
	return fmt.Sprintf("%s%.0f", sign, v)
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

// Series names one series to find the origin of.
type Series struct {
	Key    string
	Name   string
	Labels map[string]string
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
	for _, st := range sites {
		if st.Growth > 0 && len(f.Sites) < MaxSites {
			f.Sites = append(f.Sites, st)
		}
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
