//go:build !clockskew

// Package clockskew sets the clock of a worker built with the "clockskew"
// build tag off the machine's by WORKER_CLOCK_OFFSET, so that the replica
// tests can run a replica whose clock runs ahead or behind the database
// server's. faketime cannot do it: its LD_PRELOAD wraps libc's clock
// calls, and Go reads the clock through the vDSO. The scheduler fires and
// names ticks by Now, and the claims measure their offset from the server
// by it. Without the tag, Now is time.Now and Offset is 0.
package clockskew

import "time"

// Enabled reports whether the binary was built with the clockskew tag.
const Enabled = false

// Now returns the time by this process's clock: time.Now without the tag.
func Now() time.Time { return time.Now() }

// Offset returns how far Now is from the machine's clock; 0 without the tag.
func Offset() time.Duration { return 0 }

// Check validates WORKER_CLOCK_OFFSET; always nil without the tag.
func Check() error { return nil }
