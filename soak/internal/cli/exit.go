package cli

import (
	"errors"
	"fmt"
	"io"
)

// Exit statuses of bin/soak (and of bin/soak compare: 1 is a regression).
const (
	ExitSteady = 0
	ExitAlarm  = 1
	ExitError  = 2
)

// ExitCode maps Run's error to the exit status, printing the one-line
// reason for errors that Run did not already report.
func ExitCode(err error, stderr io.Writer) int {
	switch {
	case err == nil:
		return ExitSteady
	case errors.Is(err, ErrAlarm):
		return ExitAlarm
	default:
		fmt.Fprintf(stderr, "soak: %v\n", err)
		return ExitError
	}
}
