package schedule

import (
	"fmt"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// DST is a job's policy for the local times that a daylight-saving change
// skips (the clock moves forward) or repeats (it moves back).
type DST string

const (
	// DSTCron is the default, crontab(5)'s rule, as Debian's cron has it:
	// when the clock moves by less than 3 hours, a tick of a fixed-time job
	// that falls in a skipped period runs once, right after the change, and
	// a tick in a repeated period runs once, at its first occurrence. A job
	// with '*' in its minute or hour field, or @hourly, runs by the new time
	// at once: the skipped period's ticks do not run and the repeated
	// period's run again. Larger changes are not special.
	DSTCron DST = "cron"
	// DSTWallClock runs a tick at each moment the local clock shows its
	// time, as robfig/cron does: never for a skipped time, twice for a
	// repeated one.
	DSTWallClock DST = "wall_clock"
)

// CheckDST returns an error when p is no valid DST; "" is valid (DSTCron).
func CheckDST(p DST) error {
	switch p {
	case "", DSTCron, DSTWallClock:
		return nil
	}
	return fmt.Errorf("must be %s or %s, got %q", DSTCron, DSTWallClock, string(p))
}

// maxSpecialShift is crontab(5)'s bound: only clock changes of less than 3
// hours are treated as daylight saving.
const maxSpecialShift = 3 * time.Hour

// dstSchedule is a cron spec whose ticks across daylight-saving changes
// follow crontab(5) (see DSTCron). It computes in two clocks: the zone's
// periods of constant offset, whose bounds ZoneBounds gives, and the wall
// clock, in which the spec's fields are matched by a copy of it in UTC. A
// period with offset o shows wall time w at the instant w-o.
type dstSchedule struct {
	spec  *cron.SpecSchedule // as parsed: its Location is the zone
	wall  *cron.SpecSchedule // the same fields in UTC, for wall times
	fixed bool               // no '*' in minute or hour, not @hourly
}

// withDST wraps s under policy p: a spec schedule under DSTCron gets
// crontab(5)'s rule; anything else (DSTWallClock, @every) is s itself.
func withDST(s cron.Schedule, spec string, p DST) cron.Schedule {
	ss, ok := s.(*cron.SpecSchedule)
	if !ok || p == DSTWallClock {
		return s
	}
	return newDST(ss, fixedTime(spec))
}

// newDST returns the dstSchedule of ss, with its wall-clock copy.
func newDST(ss *cron.SpecSchedule, fixed bool) *dstSchedule {
	wall := *ss
	wall.Location = time.UTC
	return &dstSchedule{spec: ss, wall: &wall, fixed: fixed}
}

// fixedTime reports whether spec runs at particular times in crontab(5)'s
// sense: no '*' (or '?') starting its minute or hour field, and not
// @hourly. A CRON_TZ= prefix is ignored; seconds are the first of six
// fields.
func fixedTime(spec string) bool {
	if _, _, rest, ok := cutZone(spec); ok {
		spec = rest
	}
	f := strings.Fields(spec)
	switch {
	case len(f) == 1:
		return f[0] != "@hourly"
	case len(f) == 6:
		f = f[1:]
	}
	if len(f) < 2 {
		return false
	}
	wild := func(s string) bool { return strings.HasPrefix(s, "*") || strings.HasPrefix(s, "?") }
	return !wild(f[0]) && !wild(f[1])
}

// location is the zone the spec runs in: its CRON_TZ, or t's.
func (s *dstSchedule) location(t time.Time) *time.Location {
	if s.spec.Location == time.Local {
		return t.Location()
	}
	return s.spec.Location
}

// wallOf is the wall time that an instant of a period with offset off
// shows, as a time in UTC.
func wallOf(t time.Time, off int) time.Time {
	return t.UTC().Add(time.Duration(off) * time.Second)
}

// instant is the instant at which a period with offset off shows wall time w.
func instant(w time.Time, off int) time.Time {
	return w.Add(-time.Duration(off) * time.Second)
}

// period is a stretch of a zone with one offset, [start, end); a zero end
// is one that never ends.
type period struct {
	start, end time.Time
	off        int
	prevOff    int // the offset before start; off when start is zero
}

func periodAt(t time.Time, loc *time.Location) period {
	lt := t.In(loc)
	start, end := lt.ZoneBounds()
	_, off := lt.Zone()
	p := period{start: start, end: end, off: off, prevOff: off}
	if !start.IsZero() {
		_, p.prevOff = start.Add(-time.Nanosecond).In(loc).Zone()
	}
	return p
}

// special reports whether a change from offset from to offset to is
// daylight saving in crontab(5)'s sense.
func special(from, to int) bool {
	d := time.Duration(to-from) * time.Second
	return d != 0 && d.Abs() < maxSpecialShift
}

// Next returns the first tick after t, following crontab(5) at the
// changes of the zone's offset.
func (s *dstSchedule) Next(t time.Time) time.Time {
	loc := s.location(t)
	limit := t.AddDate(5, 0, 0)
	p := periodAt(t, loc)
	lo := wallOf(t, p.off) // ticks after this wall time, in p
	for !p.start.After(limit) {
		if s.fixed && p.prevOff > p.off && special(p.prevOff, p.off) {
			// The wall times that p repeats from the period before ran
			// there: never again.
			if rep := wallOf(p.start, p.prevOff).Add(-time.Nanosecond); rep.After(lo) {
				lo = rep
			}
		}
		w := s.wall.Next(lo)
		if w.IsZero() {
			return time.Time{}
		}
		if p.end.IsZero() || w.Before(wallOf(p.end, p.off)) {
			return instant(w, p.off).In(t.Location())
		}
		next := periodAt(p.end, loc)
		if s.fixed && next.off > p.off && special(p.off, next.off) && p.end.After(t) {
			// The wall times skipped at p.end run once, right after it.
			if g := s.wall.Next(wallOf(p.end, p.off).Add(-time.Nanosecond)); !g.IsZero() && g.Before(wallOf(p.end, next.off)) {
				return p.end.In(t.Location())
			}
		}
		p = next
		lo = wallOf(p.start, p.off).Add(-time.Nanosecond)
	}
	return time.Time{}
}

// Change is a tick that a daylight-saving change skips or repeats, and
// what the schedule does with it.
type Change struct {
	Wall  string      // the tick's local time as the spec names it, "2027-03-28 02:30"
	Zone  string      // the zone's abbreviation before the change
	Kind  string      // "skipped" (the clock moved forward over it) or "repeated"
	Runs  []time.Time // when it runs, in the zone: none, once or twice
	Fixed bool        // a fixed-time spec, in crontab(5)'s sense
}

// String says the change in one line, as --config.check prints it.
func (c Change) String() string {
	var runs []string
	for _, r := range c.Runs {
		runs = append(runs, r.Format("15:04 MST"))
	}
	switch {
	case c.Kind == "skipped" && len(runs) == 0:
		return fmt.Sprintf("%s %s does not exist (the clock moves forward): does not run", c.Wall, c.Zone)
	case c.Kind == "skipped":
		return fmt.Sprintf("%s %s does not exist (the clock moves forward): runs at %s, right after the change", c.Wall, c.Zone, runs[0])
	case len(runs) == 1:
		return fmt.Sprintf("%s occurs twice (the clock moves back): runs once, at %s", c.Wall, runs[0])
	}
	return fmt.Sprintf("%s occurs twice (the clock moves back): runs twice, at %s", c.Wall, strings.Join(runs, " and "))
}

// Changes returns up to max ticks of s in loc, after from and before
// until, that a daylight-saving change skips or repeats, and when each
// runs. A schedule other than a cron spec (@every) has none.
func Changes(s cron.Schedule, loc *time.Location, from, until time.Time, max int) []Change {
	var ds *dstSchedule
	isCron := false
	switch v := s.(type) {
	case *dstSchedule:
		ds, isCron = v, true
	case *cron.SpecSchedule: // DSTWallClock
		ds = newDST(v, false)
	default:
		return nil
	}
	loc = ds.location(from.In(loc))
	var out []Change
	for p := periodAt(from, loc); !p.end.IsZero() && p.end.Before(until) && len(out) < max; {
		next := periodAt(p.end, loc)
		if special(p.off, next.off) {
			out = append(out, ds.changesAt(p, next, isCron, max-len(out))...)
		}
		p = next
	}
	return out
}

// changesAt returns the ticks that the change from p to next skips or
// repeats, at most max of them.
func (s *dstSchedule) changesAt(p, next period, isCron bool, max int) []Change {
	lo, hi, kind := wallOf(p.end, p.off), wallOf(p.end, next.off), "skipped"
	if next.off < p.off {
		lo, hi, kind = hi, lo, "repeated"
	}
	loc := p.end.Location()
	zone, _ := p.end.Add(-time.Nanosecond).Zone()
	var out []Change
	for w := s.wall.Next(lo.Add(-time.Nanosecond)); !w.IsZero() && w.Before(hi) && len(out) < max; w = s.wall.Next(w) {
		c := Change{Wall: w.Format("2006-01-02 15:04"), Zone: zone, Kind: kind, Fixed: s.fixed}
		switch {
		case kind == "skipped" && isCron && s.fixed:
			c.Runs = []time.Time{p.end}
		case kind == "repeated":
			c.Runs = []time.Time{instant(w, p.off).In(loc)}
			if !isCron || !s.fixed {
				c.Runs = append(c.Runs, instant(w, next.off).In(loc))
			}
		}
		out = append(out, c)
	}
	return out
}
