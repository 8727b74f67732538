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
// process's CPU time per iteration; "worker" also reports x-floor, its
// cpu-ns/op over the floor's, which is the figure the targets are set on.
func Pair(b *testing.B, floor, measured func(b *testing.B)) {
	var floorCPU float64
	b.Run("floor", func(b *testing.B) { floorCPU = loop(b, floor) })
	b.Run("worker", func(b *testing.B) {
		cpu := loop(b, measured)
		if floorCPU > 0 {
			b.ReportMetric(cpu/floorCPU, "x-floor")
		}
	})
}

func loop(b *testing.B, op func(b *testing.B)) float64 {
	b.ReportAllocs()
	n := 0
	start := CPU()
	for b.Loop() {
		op(b)
		n++
	}
	cpu := float64((CPU() - start).Nanoseconds()) / float64(n)
	b.ReportMetric(cpu, "cpu-ns/op")
	return cpu
}
