package worker

import (
	"context"
	"sync"

	"github.com/sqlworker/worker/internal/jobs"
	webpkg "github.com/sqlworker/worker/internal/web"
)

// lastRuns holds, for the admin API, each job's run that finished last
// since the worker started, skipped runs included: a job whose runs are
// skipped shows it. Records can arrive out of order: the one that ended
// last is kept.
type lastRuns struct {
	mu   sync.Mutex
	runs map[string]jobs.Run
}

func (l *lastRuns) observe(r *jobs.Run) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if old, ok := l.runs[r.Job]; ok && r.EndedAt.Before(old.EndedAt) {
		return
	}
	if l.runs == nil {
		l.runs = make(map[string]jobs.Run)
	}
	l.runs[r.Job] = *r
}

func (l *lastRuns) get(name string) (jobs.Run, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	r, ok := l.runs[name]
	return r, ok
}

// admin is the Worker as the admin API sees it.
type admin struct{ w *Worker }

// Jobs lists every job the worker resolved, disabled ones included, with
// the next scheduled time and the newest finished run.
func (a admin) Jobs() ([]webpkg.JobStatus, error) {
	w := a.w
	w.mu.Lock()
	list, err := w.planLocked()
	sched := w.sched
	w.mu.Unlock()
	if err != nil {
		return nil, err
	}
	out := make([]webpkg.JobStatus, 0, len(list))
	for _, j := range list {
		s := webpkg.JobStatus{
			Name: j.Name, Kind: j.Kind, Schedule: j.Spec, Timeout: j.Timeout.String(), Enabled: j.Enabled,
			CatchUp: string(j.CatchUp), CatchUpLimit: j.CatchUpLimit,
			Retries: j.Retries, RetryBackoff: j.RetryBackoff.String(), Jitter: j.Jitter.String(),
			Overlap: string(j.Overlap),
		}
		// The settings in force, not the zero values that stand for them.
		if s.CatchUp == "" {
			s.CatchUp = string(CatchUpSkip)
		}
		if s.CatchUpLimit == 0 {
			s.CatchUpLimit = DefaultCatchUpLimit
		}
		if j.RetryBackoff == 0 {
			s.RetryBackoff = DefaultRetryBackoff.String()
		}
		if j.Enabled && sched != nil {
			s.NextRun = webpkg.UTC(sched.Next(j.Name))
		}
		if r, ok := w.last.get(j.Name); ok {
			s.LastRun = record(&r)
		}
		s.JobState = a.state(j.Name)
		out = append(out, s)
	}
	return out, nil
}

// RunNow is Worker.RunNow, its record as the admin API's JSON.
func (a admin) RunNow(name string) (*webpkg.RunRecord, error) {
	r, err := a.w.RunNow(context.Background(), name)
	if r.Job == "" {
		return nil, err
	}
	return jsonRecord(r), err
}

func record(r *jobs.Run) *webpkg.RunRecord { return jsonRecord(newRunRecord(r)) }

func jsonRecord(r RunRecord) *webpkg.RunRecord {
	rec := &webpkg.RunRecord{
		Job:          r.Job,
		ScheduledAt:  webpkg.UTC(r.ScheduledAt),
		StartedAt:    webpkg.UTC(r.StartedAt),
		EndedAt:      webpkg.UTC(r.EndedAt),
		Result:       string(r.Result),
		RowsAffected: r.RowsAffected,
		Attempt:      r.Attempt,
		JitterMS:     r.Jitter.Milliseconds(),
	}
	if r.Err != nil {
		rec.Error = r.Err.Error()
	}
	return rec
}
