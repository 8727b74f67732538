// Package schedule parses the job schedules the worker accepts: 5-field cron
// specs, 6-field specs with seconds, descriptors such as @hourly and
// "@every 10s", each optionally prefixed by CRON_TZ=<zone>.
package schedule

import (
	"errors"
	"fmt"
	"strings"

	"github.com/robfig/cron/v3"
)

// ErrEmpty is returned for an empty spec.
var ErrEmpty = errors.New("schedule is empty")

// parser takes an optional seconds field, so both 5 and 6 fields work.
var parser = cron.NewParser(
	cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor,
)

// Parse parses spec. A spec without a CRON_TZ= prefix runs in the time zone
// of the time passed to its Next.
func Parse(spec string) (s cron.Schedule, err error) {
	spec = strings.TrimSpace(spec)
	if spec == "" {
		return nil, ErrEmpty
	}
	// cron's parser has panicked on some malformed input in the past;
	// a bad schedule must be an error, never a crash.
	defer func() {
		if r := recover(); r != nil {
			s, err = nil, fmt.Errorf("invalid schedule %q", spec)
		}
	}()
	s, err = parser.Parse(spec)
	if err != nil {
		return nil, err
	}
	if e, ok := s.(cron.ConstantDelaySchedule); ok && e.Delay <= 0 {
		return nil, errors.New("@every interval must be at least 1s")
	}
	return s, nil
}
