//go:build clockskew

// Package clockskew sets the clock of a worker built with the "clockskew"
// build tag off the machine's by WORKER_CLOCK_OFFSET (a Go duration, such
// as 5s or -5s), so that the replica tests can run a replica whose clock
// runs ahead or behind the database server's. faketime cannot do it: its
// LD_PRELOAD wraps libc's clock calls, and Go reads the clock through the
// vDSO. The scheduler fires and names ticks by Now, and the claims measure
// their offset from the server by it.
package clockskew

import (
	"fmt"
	"os"
	"time"
)

// Enabled reports whether the binary was built with the clockskew tag.
const Enabled = true

// EnvVar names the environment variable of the offset.
const EnvVar = "WORKER_CLOCK_OFFSET"

var offset, offsetErr = parse(os.Getenv(EnvVar))

func parse(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%s: invalid duration %q", EnvVar, s)
	}
	return d, nil
}

// Now returns the time by this process's clock, Offset from the machine's.
func Now() time.Time { return time.Now().Add(offset) }

// Offset returns how far Now is from the machine's clock.
func Offset() time.Duration { return offset }

// Check validates WORKER_CLOCK_OFFSET.
func Check() error { return offsetErr }
