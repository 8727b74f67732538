package worker

import "github.com/sqlworker/worker/internal/jobs"

// Overlap is a job's policy for a run that comes while the job's previous
// run is still going (WithOverlap; a config entry's overlap); see the
// README's "Overlapping runs".
type Overlap = jobs.Overlap

// The overlap policies.
const (
	// OverlapSkip skips the new run and records it skipped: the default;
	// a run-now answers 409.
	OverlapSkip = jobs.OverlapSkip
	// OverlapBufferOne makes one run wait for the running one and start
	// when it ends; a run that comes while one waits is skipped.
	OverlapBufferOne = jobs.OverlapBufferOne
	// OverlapReplace cancels the running run (its context's cause is
	// ErrReplaced; it is recorded cancelled) and starts the new one once
	// the old one returned.
	OverlapReplace = jobs.OverlapReplace
)

// ErrReplaced is the cause of the context of a run that a newer run of its
// job replaced (OverlapReplace): context.Cause(ctx) in the job's Func.
var ErrReplaced = jobs.ErrReplaced

// WithOverlap sets what happens to a run of the job that comes while its
// previous run is still going: OverlapSkip (the default), OverlapBufferOne
// or OverlapReplace. On PostgreSQL the policy holds across the replicas. A
// config entry's overlap overrides it.
func WithOverlap(p Overlap) JobOption {
	return NewJobOption("WithOverlap", func(j *JobConfig) error {
		if err := jobs.CheckOverlap(p); err != nil {
			return err
		}
		j.Overlap = p
		return nil
	})
}
