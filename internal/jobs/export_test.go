package jobs

import "context"

// RunScheduled runs the named job as cron runs it at its scheduled time,
// for the benchmarks.
func (s *Scheduler) RunScheduled(name string) { s.runScheduled(s.byName[name]) }

// CountDuplicates runs one duplicate check now, as the check loop does.
func (s *Scheduler) CountDuplicates() { s.countDuplicates(context.Background(), map[string]int{}) }

// Waiting reports whether a run of the named job waits for its running
// slot (Overlap buffer_one or replace).
func (s *Scheduler) Waiting(name string) bool {
	e, _ := s.lookup(name)
	e.slot.mu.Lock()
	defer e.slot.mu.Unlock()
	return e.waiter != nil
}
