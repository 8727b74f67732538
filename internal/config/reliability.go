package config

import (
	"fmt"

	"github.com/sqlworker/worker/internal/jobs"
	"github.com/sqlworker/worker/internal/schedule"
)

// reliability reads a job's catch_up, catch_up_limit, retries,
// retry_backoff, jitter, dst and overlap into j; the bounds are those of internal/jobs.
// The jitter is checked against the schedule by job, once it is parsed.
func (fj *FileJob) reliability(field string, j *Job) error {
	if err := jobs.CheckCatchUp(jobs.CatchUp(fj.CatchUp)); err != nil {
		return fmt.Errorf("%s.catch_up: %w", field, err)
	}
	j.CatchUp = jobs.CatchUp(fj.CatchUp)
	if j.CatchUp != "" && j.CatchUp != jobs.CatchUpSkip && j.OmitSuccessRows {
		return fmt.Errorf("%s.catch_up: %s needs record_successes: true: the last tick is read from job_runs, which keeps no successes under record_successes: false", field, j.CatchUp)
	}
	if fj.CatchUpLimit != nil {
		if j.CatchUp != jobs.CatchUpAll {
			return fmt.Errorf("%s.catch_up_limit: only with catch_up: all", field)
		}
		if err := jobs.CheckCatchUpLimit(*fj.CatchUpLimit); err != nil {
			return fmt.Errorf("%s.catch_up_limit: %w", field, err)
		}
		j.CatchUpLimit = *fj.CatchUpLimit
	}
	if fj.Retries != nil {
		if err := jobs.CheckRetries(*fj.Retries); err != nil {
			return fmt.Errorf("%s.retries: %w", field, err)
		}
		j.Retries = *fj.Retries
	}
	var err error
	if j.RetryBackoff, err = duration(field+".retry_backoff", fj.RetryBackoff, 0, true); err != nil {
		return err
	}
	if j.RetryBackoff != 0 {
		if err := jobs.CheckRetryBackoff(j.RetryBackoff); err != nil {
			return fmt.Errorf("%s.retry_backoff: %w", field, err)
		}
	}
	if j.Jitter, err = duration(field+".jitter", fj.Jitter, 0, false); err != nil {
		return err
	}
	if err := schedule.CheckDST(schedule.DST(fj.DST)); err != nil {
		return fmt.Errorf("%s.dst: %w", field, err)
	}
	j.DST = schedule.DST(fj.DST)
	return fj.readOverlap(field, j)
}

// overlap reads a job's overlap into j.
func (fj *FileJob) readOverlap(field string, j *Job) error {
	if err := jobs.CheckOverlap(jobs.Overlap(fj.Overlap)); err != nil {
		return fmt.Errorf("%s.overlap: %w", field, err)
	}
	j.Overlap = jobs.Overlap(fj.Overlap)
	return nil
}
