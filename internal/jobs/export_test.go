package jobs

// RunScheduled runs the named job as cron runs it at its scheduled time,
// for the benchmarks.
func (s *Scheduler) RunScheduled(name string) { s.runScheduled(s.byName[name]) }
