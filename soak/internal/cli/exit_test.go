package cli

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
)

func TestExitCode(t *testing.T) {
	for _, tc := range []struct {
		name   string
		err    error
		want   int
		stderr string
	}{
		{"Steady", nil, 0, ""},
		{"Alarm", fmt.Errorf("%w: regressed: go_goroutines", ErrAlarm), 1, ""},
		{"CouldNotSoak", errors.New("--duration: want a positive duration"), 2, "soak: --duration: want a positive duration\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			if got := ExitCode(tc.err, &stderr); got != tc.want {
				t.Errorf("ExitCode(%v) = %d, want %d", tc.err, got, tc.want)
			}
			if got := stderr.String(); got != tc.stderr {
				t.Errorf("stderr = %q, want %q", got, tc.stderr)
			}
		})
	}
}
