// Package floorbench measures a cost against its floor in the same
// benchmark run: the least work the kernel or the database needs for the
// same result, run just before it, so that both see the same machine load.
package floorbench

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// CPU returns the CPU time the process has used so far, user and system,
// all threads (GC and other goroutines included).
func CPU() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// Pair runs floor and then measured, one call per iteration, as the
// sub-benchmarks "floor" and "worker" of b. Both report cpu-ns/op, the
// process's CPU time per iteration. "worker" also reports x-floor, its
// cpu-ns/op over the floor's, which is the figure the targets are set on:
// right after its own loop it runs floor as many times again, outside the
// timer, so that each x-floor is of two measurements side by side even with
// -count, which runs each sub-benchmark count times in a row. For
// operations of a few nanoseconds, where the call itself counts, write the
// loops inline with CPU, PerOp and Ratio.
func Pair(b *testing.B, floor, measured func(b *testing.B)) {
	b.Run("floor", func(b *testing.B) { loop(b, floor) })
	b.Run("worker", func(b *testing.B) {
		cpu, n := loop(b, measured)
		start := CPU()
		for range n {
			floor(b)
		}
		Ratio(b, cpu, float64((CPU()-start).Nanoseconds())/float64(max(n, 1)))
	})
}

func loop(b *testing.B, op func(b *testing.B)) (float64, int) {
	b.ReportAllocs()
	n := 0
	start := CPU()
	for b.Loop() {
		op(b)
		n++
	}
	return PerOp(b, start, n), n
}

// PerOp reports and returns the CPU time per iteration of n iterations
// since start (a CPU reading), as cpu-ns/op.
func PerOp(b *testing.B, start time.Duration, n int) float64 {
	cpu := float64((CPU() - start).Nanoseconds()) / float64(max(n, 1))
	b.ReportMetric(cpu, "cpu-ns/op")
	return cpu
}

// Ratio reports cpu over floor as x-floor; nothing when floor is 0.
func Ratio(b *testing.B, cpu, floor float64) {
	if floor > 0 {
		b.ReportMetric(cpu/floor, "x-floor")
	}
}
