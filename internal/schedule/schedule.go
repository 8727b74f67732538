// Package schedule parses the job schedules the worker accepts: 5-field cron
// specs, 6-field specs with seconds, descriptors such as @hourly and
// "@every 10s", each optionally prefixed by CRON_TZ=<zone>.
package schedule

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// ErrEmpty is returned for an empty spec.
var ErrEmpty = errors.New("schedule is empty")

// ErrNeverFires is returned for a spec that no time matches, such as
// "0 0 30 2 *" (30 February): robfig/cron's Next returns the zero time for
// it, which would schedule the job for 0001-01-01 and never run it.
var ErrNeverFires = errors.New("never fires")

// MinEvery is the shortest interval "@every" accepts. robfig/cron rounds a
// shorter (or negative) interval up to 1s and truncates fractions of a
// second without a word, so Parse refuses them instead.
const MinEvery = time.Second

// parser takes an optional seconds field, so both 5 and 6 fields work.
var parser = cron.NewParser(
	cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor,
)

// Parse parses spec, with DSTCron's rule at daylight-saving changes. A spec
// without a CRON_TZ= prefix runs in the time zone of the time passed to its
// Next. Runs of white space, newlines included, count as one space, so an
// error message is always one line. A spec that no time matches, such as
// 30 February, is ErrNeverFires.
func Parse(spec string) (cron.Schedule, error) { return ParseDST(spec, DSTCron) }

// ParseDST is Parse with the policy p at daylight-saving changes ("" is
// DSTCron).
func ParseDST(spec string, p DST) (s cron.Schedule, err error) {
	if err := CheckDST(p); err != nil {
		return nil, err
	}
	spec = strings.Join(strings.Fields(spec), " ")
	if spec == "" {
		return nil, ErrEmpty
	}
	rest := spec
	if prefix, zone, after, ok := cutZone(spec); ok {
		name := strings.TrimSuffix(prefix, "=")
		if zone == "" {
			return nil, fmt.Errorf("%s: missing time zone name, as in %sUTC", name, prefix)
		}
		if _, err := time.LoadLocation(zone); err != nil {
			return nil, fmt.Errorf("%s: unknown time zone %q", name, zone)
		}
		if after == "" {
			return nil, fmt.Errorf("%s%s: no schedule after the time zone", prefix, zone)
		}
		rest = after
	}
	if d, ok := strings.CutPrefix(rest, "@every "); ok {
		if err := checkEvery(d); err != nil {
			return nil, err
		}
	}
	if s, err = parseCron(spec); err != nil {
		return nil, err
	}
	s = withDST(s, spec, p)
	// Next looks up to five years ahead; cron has no year field, so a spec
	// that matches any date at all matches one within five years (29
	// February included).
	if s.Next(time.Now()).IsZero() {
		return nil, ErrNeverFires
	}
	return s, nil
}

// parseCron parses spec with robfig/cron.
func parseCron(spec string) (s cron.Schedule, err error) {
	// cron's parser has panicked on some malformed input in the past;
	// a bad schedule must be an error, never a crash.
	defer func() {
		if r := recover(); r != nil {
			s, err = nil, errors.New("malformed schedule")
		}
	}()
	return parser.Parse(spec)
}

// cutZone splits a "CRON_TZ=zone rest" or "TZ=zone rest" spec.
func cutZone(spec string) (prefix, zone, rest string, ok bool) {
	for _, prefix = range []string{"CRON_TZ=", "TZ="} {
		if after, found := strings.CutPrefix(spec, prefix); found {
			zone, rest, _ = strings.Cut(after, " ")
			return prefix, zone, rest, true
		}
	}
	return "", "", "", false
}

// ErrDurationTooLong is ParseDuration's error for a well-formed duration
// beyond time.Duration's range, which time.ParseDuration reports as
// invalid as if it were a typo.
var ErrDurationTooLong = fmt.Errorf("too long: at most %s", time.Duration(math.MaxInt64))

// durationSyntax matches what time.ParseDuration reads, whatever the size.
var durationSyntax = regexp.MustCompile(`^[-+]?((\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h))+$`)

// ParseDuration is time.ParseDuration, except that a duration too long for
// time.Duration is ErrDurationTooLong rather than "invalid".
func ParseDuration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil && durationSyntax.MatchString(s) {
		return 0, ErrDurationTooLong
	}
	return d, err
}

// checkEvery validates the interval of "@every <interval>".
func checkEvery(s string) error {
	d, err := ParseDuration(s)
	switch {
	case errors.Is(err, ErrDurationTooLong):
		return fmt.Errorf("@every: interval %q is %w", s, err)
	case err != nil:
		return fmt.Errorf("@every: invalid interval %q: want a number with a unit, such as 10s or 5m", s)
	case d < MinEvery:
		return fmt.Errorf("@every: interval must be at least %s, got %s", MinEvery, s)
	case d%time.Second != 0:
		return fmt.Errorf("@every: interval must be a whole number of seconds, got %s", s)
	}
	return nil
}

// intervalTicks is how many of the next ticks MinInterval looks at.
const intervalTicks = 100

// MinInterval returns the shortest time between two of the next ticks of s
// after from: the interval of a regular schedule, and the shortest one of a
// schedule such as "0 9 * * 1-5" (a day, not the weekend's three). It is 0
// for a schedule that never fires.
func MinInterval(s cron.Schedule, from time.Time) time.Duration {
	var shortest time.Duration
	prev := s.Next(from)
	for i := 0; i < intervalTicks && !prev.IsZero(); i++ {
		t := s.Next(prev)
		if t.IsZero() {
			break
		}
		if d := t.Sub(prev); shortest == 0 || d < shortest {
			shortest = d
		}
		prev = t
	}
	return shortest
}
