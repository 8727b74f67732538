package jobs

import "context"

// RunScheduled runs the named job as cron runs it at its scheduled time,
// for the benchmarks.
func (s *Scheduler) RunScheduled(name string) { s.runScheduled(s.byName[name]) }

// CountDuplicates runs one duplicate check now, as the check loop does.
func (s *Scheduler) CountDuplicates() { s.countDuplicates(context.Background(), map[string]int{}) }
