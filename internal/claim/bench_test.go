package claim_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/sqlworker/worker/internal/claim"
)

// BenchmarkClaim compares a tick's coordination with one bare INSERT ...
// ON CONFLICT DO NOTHING round trip to the same server (issue 9: at most
// 2x). Each iteration times one bare insert and then the coordination, so
// that both see the same load on a shared machine; the sub-benchmarks report
// bare-ns/op, coord-ns/op and their ratio x-bare. The coordination is Claim
// alone (the round trip before the job starts), Claim then Finish, and
// Claim then Finish checking one earlier tick for a miss, as the
// Coordinator does at each tick.
func BenchmarkClaim(b *testing.B) {
	dsn := server(b)
	ctx := context.Background()
	db := open(b, dsn)
	if _, err := db.Exec(`CREATE TABLE bare (job text NOT NULL, scheduled_at timestamptz NOT NULL, owner text NOT NULL,
		PRIMARY KEY (job, scheduled_at))`); err != nil {
		b.Fatal(err)
	}
	c := replica(b, dsn, "a", claim.Config{})
	base := time.Now().Add(-24 * time.Hour).Truncate(time.Second)
	i := 0 // a new key at each call, across the repeated calls of a sub-benchmark
	next := func() time.Time { i++; return base.Add(time.Duration(i) * time.Millisecond) }

	for _, bc := range []struct {
		name            string
		finish, earlier bool
	}{{"Claim", false, false}, {"ClaimFinish", true, false}, {"ClaimFinishCheckingOneEarlierTick", true, true}} {
		b.Run(bc.name, func(b *testing.B) {
			var bare, coord time.Duration
			for b.Loop() {
				t0 := time.Now()
				if _, err := db.ExecContext(ctx, `INSERT INTO bare VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`, "bench", next(), "a"); err != nil {
					b.Fatal(err)
				}
				t1 := time.Now()
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
				if bc.finish {
					if err := l.Finish(ctx, true); err != nil {
						b.Fatal(err)
					}
				}
				bare, coord = bare+t1.Sub(t0), coord+time.Since(t1)
			}
			n := float64(b.N)
			b.ReportMetric(0, "ns/op")
			b.ReportMetric(float64(bare.Nanoseconds())/n, "bare-ns/op")
			b.ReportMetric(float64(coord.Nanoseconds())/n, "coord-ns/op")
			b.ReportMetric(float64(coord)/float64(bare), "x-bare")
		})
	}
}
