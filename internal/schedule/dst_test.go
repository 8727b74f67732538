package schedule

import (
	"fmt"
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // the zones' rules, whatever the machine has

	"github.com/robfig/cron/v3"
)

// clock is what a cron daemon that wakes at every minute of real time sees
// over a stretch: the instants, and the wall minute the local clock shows
// at each, as minutes since the epoch of a UTC clock and as the fields a
// spec matches. It is computed once per zone and year, for every spec.
type clock struct {
	at   []time.Time
	wall []int64 // wall minute, in minutes since 1970-01-01 00:00 "UTC"
	f    []fields
}

// fields are the parts of a wall minute a spec matches.
type fields struct{ minute, hour, day, weekday, month int8 }

func fieldsOf(w time.Time) fields {
	return fields{int8(w.Minute()), int8(w.Hour()), int8(w.Day()), int8(w.Weekday()), int8(w.Month())}
}

func newClock(loc *time.Location, from, to time.Time) clock {
	var c clock
	for i := from.Add(-time.Minute); i.Before(to); i = i.Add(time.Minute) {
		l := i.In(loc)
		w := time.Date(l.Year(), l.Month(), l.Day(), l.Hour(), l.Minute(), 0, 0, time.UTC)
		c.at = append(c.at, i)
		c.wall = append(c.wall, w.Unix()/60)
		c.f = append(c.f, fieldsOf(w))
	}
	return c
}

// reference is crontab(5)'s rule written as a cron daemon runs it: at each
// minute of c it runs the job when the wall minute matches. When the clock
// jumped forward by less than 3 hours since its last wake-up, a fixed-time
// job that matched a skipped minute runs now, once; when it jumped back by
// less than 3 hours, a fixed-time job does not run again at a wall minute
// it has passed. A wildcard job follows the clock. It shares nothing with
// dstSchedule but the spec's parsed fields.
func reference(ss *cron.SpecSchedule, fixed bool, c clock) []time.Time {
	const special = int64(maxSpecialShift / time.Minute)
	var out []time.Time
	prev := c.wall[0] // the minute before the stretch
	seen := prev      // the newest wall minute a fixed-time job has passed
	for k := 1; k < len(c.at); k++ {
		w := c.wall[k]
		jump := w - (prev + 1)
		run := false
		switch {
		case jump > 0 && jump < special && fixed:
			for x := prev + 1; x < w; x++ {
				run = run || matches(ss, fieldsOf(time.Unix(x*60, 0).UTC()))
			}
		case jump < 0 && -jump >= special:
			seen = prev + jump // a real change of time: nothing passed
		}
		if matches(ss, c.f[k]) && (!fixed || w > seen) {
			run = true
		}
		if run {
			out = append(out, c.at[k])
		}
		prev = w
		seen = max(seen, w)
	}
	return out
}

// matches reports whether a wall minute's fields match the spec's, second 0.
func matches(ss *cron.SpecSchedule, f fields) bool {
	bit := func(set uint64, v int8) bool { return set&(1<<uint(v)) != 0 }
	const star = 1 << 63
	dom, dow := bit(ss.Dom, f.day), bit(ss.Dow, f.weekday)
	day := dom || dow
	if ss.Dom&star != 0 || ss.Dow&star != 0 {
		day = dom && dow
	}
	return bit(ss.Second, 0) && bit(ss.Minute, f.minute) && bit(ss.Hour, f.hour) && day && bit(ss.Month, f.month)
}

// ticks follows Next from from to to.
func ticks(s cron.Schedule, from, to time.Time) []time.Time {
	var out []time.Time
	for t := s.Next(from.Add(-time.Nanosecond)); !t.IsZero() && t.Before(to); t = s.Next(t) {
		out = append(out, t)
	}
	return out
}

// dstZones are zones with both kinds of change: an hour forward and back
// at 02:00 or 03:00 local (Berlin, New York), a 30-minute shift (Lord
// Howe), a change at midnight (Santiago), and a 2-hour one (Troll).
var dstZones = []string{"Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "America/Santiago", "Antarctica/Troll"}

// dstSpecs are fixed-time specs in and around the changed hours, and
// wildcard ones, each marked as crontab(5) sees it: fixed unless its
// minute or hour field starts with '*', or it is @hourly.
var dstSpecs = []struct {
	spec  string
	fixed bool
}{
	{"30 2 * * *", true}, {"0 2 * * *", true}, {"0 3 * * *", true}, {"0,30 2 * * *", true},
	{"45 1,2 * * *", true}, {"15 2 * * 0", true}, {"30 1 * * *", true}, {"59 1 * * *", true},
	{"0 0 * * *", true}, {"30 0 * * *", true}, {"@daily", true}, {"0 30 2 * * *", true},
	{"15,45 * * * *", false}, {"*/15 * * * *", false}, {"0 * * * *", false}, {"30 */2 * * *", false},
	{"@hourly", false}, {"0 */30 2 * * *", false},
}

// Ensure that, in every zone of dstZones and for every spec of dstSpecs,
// Next gives exactly the runs of the crontab(5) reference over whole years.
func TestDST_CronMatchesReference(t *testing.T) {
	for _, zone := range dstZones {
		t.Run(zone, func(t *testing.T) {
			t.Parallel()
			loc, err := time.LoadLocation(zone)
			if err != nil {
				t.Fatal(err)
			}
			for _, year := range []int{2026, 2027} {
				from, to := time.Date(year, 1, 1, 0, 0, 0, 0, loc), time.Date(year+1, 1, 1, 0, 0, 0, 0, loc)
				c := newClock(loc, from, to)
				for _, sc := range dstSpecs {
					s, err := Parse("CRON_TZ=" + zone + " " + sc.spec)
					if err != nil {
						t.Fatal(err)
					}
					got, want := ticks(s, from, to), reference(s.(*dstSchedule).spec, sc.fixed, c)
					if d := firstDiff(got, want); d != "" {
						t.Errorf("%q in %d: %s", sc.spec, year, d)
					}
				}
			}
		})
	}
}

// firstDiff describes the first difference of two tick lists, or "".
func firstDiff(got, want []time.Time) string {
	for i := range min(len(got), len(want)) {
		if !got[i].Equal(want[i]) {
			return fmt.Sprintf("tick %d: got %s, want %s", i, got[i].UTC(), want[i].UTC())
		}
	}
	if len(got) != len(want) {
		return fmt.Sprintf("got %d ticks, want %d", len(got), len(want))
	}
	return ""
}

// Ensure a job at 02:30 in Europe/Berlin runs exactly once on every day of
// a year: at 03:00 CEST on the day 02:30 does not exist, at 02:30 CEST (not
// again at 02:30 CET) on the day it exists twice.
func TestDST_BerlinOncePerDay(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	s, err := Parse("30 2 * * *")
	if err != nil {
		t.Fatal(err)
	}
	from := time.Date(2026, 1, 1, 0, 0, 0, 0, berlin)
	perDay := map[string]int{}
	for _, tick := range ticks(s, from, from.AddDate(1, 0, 0)) {
		perDay[tick.In(berlin).Format(time.DateOnly)]++
	}
	for d := from; d.Year() == 2026; d = d.AddDate(0, 0, 1) {
		if n := perDay[d.Format(time.DateOnly)]; n != 1 {
			t.Errorf("%s: %d runs, want 1", d.Format(time.DateOnly), n)
		}
	}
	for _, c := range []struct {
		day  string
		want time.Time
	}{
		{"2026-03-29", time.Date(2026, 3, 29, 1, 0, 0, 0, time.UTC)},   // 03:00 CEST, right after the change
		{"2026-10-25", time.Date(2026, 10, 25, 0, 30, 0, 0, time.UTC)}, // 02:30 CEST, the first of two
	} {
		day, _ := time.ParseInLocation(time.DateOnly, c.day, berlin)
		if got := s.Next(day); !got.Equal(c.want) {
			t.Errorf("%s: runs at %s, want %s", c.day, got.UTC(), c.want)
		}
	}
}

// Ensure DSTWallClock keeps robfig/cron's ticks: none in a skipped hour,
// two in a repeated one.
func TestParseDST_WallClock(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	s, err := ParseDST("CRON_TZ=America/New_York 30 1,2 * * *", DSTWallClock)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s.(*dstSchedule); ok {
		t.Fatalf("ParseDST(…, %s): got a crontab(5) schedule, want robfig/cron's own", DSTWallClock)
	}
	day := func(m time.Month, d int) []string {
		from := time.Date(2025, m, d, 0, 0, 0, 0, ny)
		var out []string
		for _, tick := range ticks(s, from, from.AddDate(0, 0, 1)) {
			out = append(out, tick.In(ny).Format("15:04 MST"))
		}
		return out
	}
	if got, want := fmt.Sprint(day(time.March, 9)), "[01:30 EST]"; got != want {
		t.Errorf("9 March 2025 (02:30 skipped): got %s, want %s", got, want)
	}
	if got, want := fmt.Sprint(day(time.November, 2)), "[01:30 EDT 01:30 EST 02:30 EST]"; got != want {
		t.Errorf("2 November 2025 (01:30 twice): got %s, want %s", got, want)
	}
}

func TestParseDST_BadPolicy(t *testing.T) {
	_, err := ParseDST("0 2 * * *", "sometimes")
	if want := `must be cron or wall_clock, got "sometimes"`; err == nil || err.Error() != want {
		t.Errorf("got %v, want %q", err, want)
	}
}

// Ensure Changes lists the ticks that a change skips or repeats, and when
// each runs under the job's policy.
func TestChanges(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	from := time.Date(2026, 1, 1, 0, 0, 0, 0, berlin)
	until := from.AddDate(1, 0, 0)
	for _, tc := range []struct {
		spec string
		p    DST
		want []string
	}{
		{"30 2 * * *", DSTCron, []string{
			"2026-03-29 02:30 CET does not exist (the clock moves forward): runs at 03:00 CEST, right after the change",
			"2026-10-25 02:30 occurs twice (the clock moves back): runs once, at 02:30 CEST",
		}},
		{"30 2 * * *", DSTWallClock, []string{
			"2026-03-29 02:30 CET does not exist (the clock moves forward): does not run",
			"2026-10-25 02:30 occurs twice (the clock moves back): runs twice, at 02:30 CEST and 02:30 CET",
		}},
		{"0 */30 2 * * *", DSTCron, []string{ // a wildcard: by the new time
			"2026-03-29 02:00 CET does not exist (the clock moves forward): does not run",
			"2026-03-29 02:30 CET does not exist (the clock moves forward): does not run",
			"2026-10-25 02:00 occurs twice (the clock moves back): runs twice, at 02:00 CEST and 02:00 CET",
		}},
		{"0 12 * * *", DSTCron, nil},
		{"@every 1h", DSTCron, nil},
	} {
		t.Run(tc.spec+"/"+string(tc.p), func(t *testing.T) {
			s, err := ParseDST(tc.spec, tc.p)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, c := range Changes(s, berlin, from, until, 3) {
				got = append(got, c.String())
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}
