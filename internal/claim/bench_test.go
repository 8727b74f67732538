package claim_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/sqlworker/worker/internal/claim"
	"github.com/sqlworker/worker/internal/jobhistory"
)

// BenchmarkClaim compares a tick's coordination with one bare INSERT ...
// ON CONFLICT DO NOTHING round trip to the same server (issue 9: at most
// 2x). Each iteration times one bare insert and then the coordination, so
// that both see the same load on a shared machine; the sub-benchmarks report
// bare-ns/op, coord-ns/op and their ratio x-bare.
//
// The coordination of a tick, as the Coordinator does it:
//   - Claim: the claim alone, the round trip before the job starts;
//   - ClaimFinish: Claim, then Finish: a job whose successes write no
//     job_runs row (record_successes: false);
//   - ClaimFinishRecording: Claim, then FinishRecording, which writes the
//     job_runs row in the finish's statement, less the one-row job_runs
//     INSERT that a run writes anyway (timed in the same iteration): what
//     coordination adds to a run that is recorded;
//   - ClaimFinishRecordingCheckingOneEarlierTick: the same, checking one
//     earlier tick for a miss, as at a tick that follows one this replica
//     did not see.
func BenchmarkClaim(b *testing.B) {
	dsn := serverWithRuns(b)
	ctx := context.Background()
	d := open(b, dsn)
	if _, err := d.Exec(`CREATE TABLE bare (job text NOT NULL, scheduled_at timestamptz NOT NULL, owner text NOT NULL,
		PRIMARY KEY (job, scheduled_at))`); err != nil {
		b.Fatal(err)
	}
	c := replica(b, dsn, "a", claim.Config{})
	base := time.Now().Add(-24 * time.Hour).Truncate(time.Second)
	i := 0 // a new key at each call, across the repeated calls of a sub-benchmark
	next := func() time.Time { i++; return base.Add(time.Duration(i) * time.Millisecond) }
	runOf := func(job string, tick time.Time) jobhistory.RunRow {
		return jobhistory.RunRow{Job: job, ScheduledAt: tick, StartedAt: tick, EndedAt: tick.Add(time.Millisecond), Result: "success", RowsAffected: 1, Attempt: 1}
	}

	for _, bc := range []struct {
		name                       string
		finish, recording, earlier bool
	}{
		{"Claim", false, false, false},
		{"ClaimFinish", true, false, false},
		{"ClaimFinishRecording", true, true, false},
		{"ClaimFinishRecordingCheckingOneEarlierTick", true, true, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var bare, coord time.Duration
			for b.Loop() {
				t0 := time.Now()
				if _, err := d.ExecContext(ctx, `INSERT INTO bare VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`, "bench", next(), "a"); err != nil {
					b.Fatal(err)
				}
				t1 := time.Now()
				bare += t1.Sub(t0)
				if bc.recording { // the run's own row, which an uncoordinated run writes too
					if err := jobhistory.InsertRuns(ctx, d, []jobhistory.RunRow{runOf("plain", next())}); err != nil {
						b.Fatal(err)
					}
					t2 := time.Now()
					coord -= t2.Sub(t1)
					t1 = t2
				}
				tick := next()
				job := bc.name
				if !bc.finish {
					job += strconv.Itoa(i) // a job of its own: running claims do not overlap
				}
				var earlier []time.Time
				if bc.earlier {
					earlier = []time.Time{tick.Add(-time.Millisecond)}
				}
				l, err := c.Claim(ctx, job, tick, earlier...)
				if err != nil {
					b.Fatal(err)
				}
				switch {
				case bc.recording:
					err = l.FinishRecording(ctx, true, runOf(job, tick))
				case bc.finish:
					err = l.Finish(ctx, true)
				}
				if err != nil {
					b.Fatal(err)
				}
				coord += time.Since(t1)
			}
			n := float64(b.N)
			b.ReportMetric(0, "ns/op")
			b.ReportMetric(float64(bare.Nanoseconds())/n, "bare-ns/op")
			b.ReportMetric(float64(coord.Nanoseconds())/n, "coord-ns/op")
			b.ReportMetric(float64(coord)/float64(bare), "x-bare")
		})
	}
}
