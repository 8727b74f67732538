package schedule

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/robfig/cron/v3"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// from is a Saturday, 05:17:42 in New York (EST, the day before DST starts).
var from = time.Date(2025, time.March, 8, 10, 17, 42, 0, time.UTC)

func utc(year int, month time.Month, day, hour, min, sec int) time.Time {
	return time.Date(year, month, day, hour, min, sec, 0, time.UTC)
}

func TestParse_Accepted(t *testing.T) {
	tests := []struct {
		name string
		spec string
		want time.Time // Next(from), in UTC
	}{
		// 5 fields: minute hour dom month dow.
		{"EveryMinute", "* * * * *", utc(2025, 3, 8, 10, 18, 0)},
		{"MinuteStep", "*/15 * * * *", utc(2025, 3, 8, 10, 30, 0)},
		{"MinuteList", "15,45 * * * *", utc(2025, 3, 8, 10, 45, 0)},
		{"Weekdays", "0 9 * * 1-5", utc(2025, 3, 10, 9, 0, 0)},
		{"WeekdayName", "0 22 * * SUN", utc(2025, 3, 9, 22, 0, 0)},
		{"MonthNames", "0 0 1 JAN,JUL *", utc(2025, 7, 1, 0, 0, 0)},
		{"FirstOfMonth", "30 8 1 * *", utc(2025, 4, 1, 8, 30, 0)},
		{"NewYear", "0 0 1 1 *", utc(2026, 1, 1, 0, 0, 0)},
		{"LeapDay", "0 0 29 2 *", utc(2028, 2, 29, 0, 0, 0)},
		{"QuestionMark", "0 0 ? * *", utc(2025, 3, 9, 0, 0, 0)},
		{"HourRangeStep", "0 8-18/4 * * *", utc(2025, 3, 8, 12, 0, 0)},
		{"ExtraWhiteSpace", "  0\t9 *  * *\n", utc(2025, 3, 9, 9, 0, 0)},
		// 6 fields: second first.
		{"SecondStep", "*/10 * * * * *", utc(2025, 3, 8, 10, 17, 50)},
		{"SecondFixed", "30 * * * * *", utc(2025, 3, 8, 10, 18, 30)},
		{"Noon", "0 0 12 * * *", utc(2025, 3, 8, 12, 0, 0)},
		{"SecondRange", "5-10 0 * * * *", utc(2025, 3, 8, 11, 0, 5)},
		{"MinuteRangeStep", "0 20-40/10 * * * *", utc(2025, 3, 8, 10, 20, 0)},
		// Descriptors.
		{"Every10s", "@every 10s", utc(2025, 3, 8, 10, 17, 52)},
		{"Every1s", "@every 1s", utc(2025, 3, 8, 10, 17, 43)},
		{"Every90m", "@every 1h30m", utc(2025, 3, 8, 11, 47, 42)},
		{"Hourly", "@hourly", utc(2025, 3, 8, 11, 0, 0)},
		{"Daily", "@daily", utc(2025, 3, 9, 0, 0, 0)},
		{"Midnight", "@midnight", utc(2025, 3, 9, 0, 0, 0)},
		{"Weekly", "@weekly", utc(2025, 3, 9, 0, 0, 0)},
		{"Monthly", "@monthly", utc(2025, 4, 1, 0, 0, 0)},
		{"Yearly", "@yearly", utc(2026, 1, 1, 0, 0, 0)},
		{"Annually", "@annually", utc(2026, 1, 1, 0, 0, 0)},
		// Time zones: 09:00 EST is 14:00 UTC.
		{"NewYork", "CRON_TZ=America/New_York 0 9 * * *", utc(2025, 3, 8, 14, 0, 0)},
		{"NewYorkSeconds", "CRON_TZ=America/New_York 0 0 9 * * *", utc(2025, 3, 8, 14, 0, 0)},
		// 02:30 does not exist on 9 March 2025 in New York (02:00 EST
		// jumps to 03:00 EDT): as cron, the run is right after the
		// change, at 03:00 EDT (07:00 UTC). ParseDST's DSTWallClock skips
		// it (TestParseDST_WallClock).
		{"NewYorkSkippedHour", "CRON_TZ=America/New_York 30 2 * * *", utc(2025, 3, 9, 7, 0, 0)},
		{"TokyoDaily", "TZ=Asia/Tokyo @daily", utc(2025, 3, 8, 15, 0, 0)},
		{"UTCEvery", "CRON_TZ=UTC @every 5s", utc(2025, 3, 8, 10, 17, 47)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Parse(tt.spec)
			if err != nil {
				t.Fatalf("Parse(%q): got error %v, want nil", tt.spec, err)
			}
			if got := s.Next(from); !got.Equal(tt.want) {
				t.Errorf("Parse(%q).Next(%s): got %s, want %s", tt.spec, from, got.UTC(), tt.want)
			}
		})
	}
}

func TestParse_EveryKeepsInterval(t *testing.T) {
	for spec, want := range map[string]time.Duration{
		"@every 1s":     time.Second,
		"@every 10s":    10 * time.Second,
		"@every 2m":     2 * time.Minute,
		"@every 1h30m":  90 * time.Minute,
		"@every 1000ms": time.Second,
	} {
		s, err := Parse(spec)
		if err != nil {
			t.Fatalf("Parse(%q): got error %v, want nil", spec, err)
		}
		d, ok := s.(cron.ConstantDelaySchedule)
		if !ok {
			t.Fatalf("Parse(%q): got %T, want cron.ConstantDelaySchedule", spec, s)
		}
		if d.Delay != want {
			t.Errorf("Parse(%q): got delay %s, want %s", spec, d.Delay, want)
		}
	}
}

func TestParse_Rejected(t *testing.T) {
	tests := []struct {
		name string
		spec string
		want string
	}{
		{"Empty", "", "schedule is empty"},
		{"Blank", " \t\n ", "schedule is empty"},
		{"OneField", "x", "expected 5 to 6 fields, found 1: [x]"},
		{"FourFields", "* * * *", "expected 5 to 6 fields, found 4: [* * * *]"},
		{"SevenFields", "* * * * * * *", "expected 5 to 6 fields, found 7: [* * * * * * *]"},
		{"MinuteTooBig", "60 * * * *", "end of range (60) above maximum (59): 60"},
		{"HourTooBig", "0 24 * * *", "end of range (24) above maximum (23): 24"},
		{"DayZero", "0 0 0 * *", "beginning of range (0) below minimum (1): 0"},
		{"MonthTooBig", "0 0 1 13 *", "end of range (13) above maximum (12): 13"},
		{"WeekdayTooBig", "0 0 * * 7", "end of range (7) above maximum (6): 7"},
		{"SecondTooBig", "60 * * * * *", "end of range (60) above maximum (59): 60"},
		{"ZeroStep", "*/0 * * * *", "step of range should be a positive number: */0"},
		{"BackwardRange", "5-1 * * * *", "beginning of range (5) beyond end of range (1): 5-1"},
		{"NotANumber", "0 0 L * *", `failed to parse int from L: strconv.Atoi: parsing "L": invalid syntax`},
		{"EveryHalfSecond", "@every 500ms", "@every: interval must be at least 1s, got 500ms"},
		{"EveryNegative", "@every -5s", "@every: interval must be at least 1s, got -5s"},
		{"EveryZero", "@every 0s", "@every: interval must be at least 1s, got 0s"},
		{"EveryFraction", "@every 1500ms", "@every: interval must be a whole number of seconds, got 1500ms"},
		{"EveryNoUnit", "@every 5", `@every: invalid interval "5": want a number with a unit, such as 10s or 5m`},
		{"EveryOverflow", "@every 10000000h", `@every: interval "10000000h" is too long: at most 2562047h47m16.854775807s`},
		{"EveryOverflowSum", "@every 2562047h60m", `@every: interval "2562047h60m" is too long: at most 2562047h47m16.854775807s`},
		{"EveryNoInterval", "@every", "unrecognized descriptor: @every"},
		{"UnknownDescriptor", "@fortnightly", "unrecognized descriptor: @fortnightly"},
		{"UnknownZone", "CRON_TZ=Nowhere/Land * * * * *", `CRON_TZ: unknown time zone "Nowhere/Land"`},
		{"ZoneDotDot", "TZ=../../etc/passwd * * * * *", `TZ: unknown time zone "../../etc/passwd"`},
		{"EmptyZone", "CRON_TZ= * * * * *", "CRON_TZ: missing time zone name, as in CRON_TZ=UTC"},
		{"ZoneOnly", "CRON_TZ=UTC", "CRON_TZ=UTC: no schedule after the time zone"},
		{"ZoneNewline", "CRON_TZ=UTC\n", "CRON_TZ=UTC: no schedule after the time zone"},
		{"EveryWithZoneTooShort", "CRON_TZ=UTC @every 100ms", "@every: interval must be at least 1s, got 100ms"},
		// Specs that no time matches: robfig/cron's Next returns the zero time.
		{"February30", "0 0 30 2 *", "never fires"},
		{"April31", "0 0 31 4 *", "never fires"},
		{"Day31OfShortMonths", "0 0 31 2,4,6,9,11 *", "never fires"},
		{"February30Seconds", "0 0 0 30 2 *", "never fires"},
		{"February30WithZone", "CRON_TZ=America/New_York 0 0 30 2 *", "never fires"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Parse(tt.spec)
			if err == nil {
				t.Fatalf("Parse(%q): got %#v, want error %q", tt.spec, s, tt.want)
			}
			if got := err.Error(); got != tt.want {
				t.Errorf("Parse(%q): got error %q, want %q", tt.spec, got, tt.want)
			}
			if s != nil {
				t.Errorf("Parse(%q): got schedule %#v with the error, want nil", tt.spec, s)
			}
		})
	}
}

// Ensure specs that fire rarely, but do fire, are accepted, and those that
// never fire are ErrNeverFires.
func TestParse_NeverFires(t *testing.T) {
	for _, spec := range []string{"0 0 29 2 *", "0 0 31 1,2 *", "0 0 30 2 MON", "0 0 31 12 *"} {
		if _, err := Parse(spec); err != nil {
			t.Errorf("Parse(%q): got error %q, want nil", spec, err)
		}
	}
	for _, spec := range []string{"0 0 30 2 *", "0 0 31 11 *", "TZ=UTC 0 0 31 9 *"} {
		if _, err := Parse(spec); !errors.Is(err, ErrNeverFires) {
			t.Errorf("Parse(%q): got %v, want ErrNeverFires", spec, err)
		}
	}
}

func TestParse_EmptyIsErrEmpty(t *testing.T) {
	for _, spec := range []string{"", "  ", "\n\t"} {
		if _, err := Parse(spec); !errors.Is(err, ErrEmpty) {
			t.Errorf("Parse(%q): got %v, want ErrEmpty", spec, err)
		}
	}
}

// checkParse holds the invariants of Parse for any input.
func checkParse(t *testing.T, spec string) {
	t.Helper()
	s, err := Parse(spec)
	if err != nil {
		if s != nil {
			t.Errorf("Parse(%q): got a schedule and error %v", spec, err)
		}
		if msg := err.Error(); msg == "" || strings.ContainsAny(msg, "\n\r") {
			t.Errorf("Parse(%q): got error %q, want one non-empty line", spec, msg)
		}
		return
	}
	if s == nil {
		t.Fatalf("Parse(%q): got nil schedule and nil error", spec)
	}
	if d, ok := s.(cron.ConstantDelaySchedule); ok && (d.Delay < MinEvery || d.Delay%time.Second != 0) {
		t.Errorf("Parse(%q): got delay %s, want whole seconds >= %s", spec, d.Delay, MinEvery)
	}
	// A spec that never fires is refused: Next is never the zero time.
	now := time.Now()
	if next := s.Next(now); !next.After(now) {
		t.Errorf("Parse(%q).Next(%s): got %s, want a later time", spec, now, next)
	}
}

func FuzzParse(f *testing.F) {
	for _, spec := range []string{
		"* * * * *", "*/5 * * * * *", "@every 10s", "@hourly", "CRON_TZ=UTC 0 9 * * 1-5",
		"TZ=America/New_York @daily", "0 0 30 2 *", "@every 500ms", "CRON_TZ=UTC",
		"1-5/2,7 */3 ? JAN-MAR MON-FRI",
	} {
		f.Add(spec)
	}
	f.Fuzz(checkParse)
}
