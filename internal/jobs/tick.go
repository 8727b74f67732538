package jobs

import (
	"fmt"
	"time"
)

// RunTick runs a job's tick scheduled at `at`, now, through the chain a
// tick cron fires goes through: claimed for that tick when a Coordinator is
// set, skipped while the job's previous run is going, retried by the job's
// policy, recorded with at as its scheduled time. It waits no jitter. It
// runs once the Scheduler is built, before Start too, so that a test can
// drive a schedule by hand; it returns ErrStopped once Stop has begun.
func (s *Scheduler) RunTick(name string, at time.Time) (*Run, error) {
	e, ok := s.lookup(name)
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownJob, name)
	}
	if s.quitting() {
		return nil, ErrStopped
	}
	return s.run(e, &Run{Job: name, ScheduledAt: at})
}
